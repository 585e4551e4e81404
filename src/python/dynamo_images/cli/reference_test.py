"""The docs site's image reference names every image target the BUILD files define, and every
knob. Runs at the root of a copy of the repository (//:project-files)."""

from __future__ import annotations

from pathlib import Path

from dynamo_images.cli import build, buildfiles, reference


def test_every_image_target_and_knob_is_in_the_reference() -> None:
    page = reference.render(Path("."))
    for image_dir, targets in buildfiles.docker_image_targets(Path(".")).items():
        if image_dir != "base":
            for target in targets:
                assert f"`docker/{image_dir}:{target}`" in page
    for knob in build.BUILD_KNOBS:
        assert f"`{knob.env_var}`" in page
    assert "`dynamo:latest-vllm-runtime-aws`" in page
    assert "`dynamo-images/epp:latest`" in page
