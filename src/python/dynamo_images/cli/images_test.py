from __future__ import annotations

import pytest

from dynamo_images.cli import images
from dynamo_images.cli.errors import UsageError


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("vllm", "vllm"),
        ("VLLM", "vllm"),
        ("none", "dynamo"),
        ("NONE", "dynamo"),
        ("dynamo", "dynamo"),
        ("TrtLlm", "trtllm"),
    ],
)
def test_framework_names_and_aliases(given: str, canonical: str) -> None:
    assert images.normalize_framework(given) == canonical


def test_unknown_framework_names_value_and_accepted_ones() -> None:
    with pytest.raises(
        UsageError,
        match=r"unknown framework 'tgi'; accepted: dynamo, vllm, sglang, trtllm; alias none \(= "
        r"dynamo\)",
    ):
        images.normalize_framework("tgi")


@pytest.mark.parametrize(
    ("framework", "target", "efa", "address", "tag"),
    [
        ("vllm", "runtime", False, "docker/vllm:runtime", "dynamo:latest-vllm-runtime"),
        (
            "dynamo",
            "runtime",
            False,
            "docker/dynamo:runtime",
            "dynamo:latest-dynamo-runtime",
        ),
        (
            "sglang",
            "local-dev",
            False,
            "docker/sglang:local-dev",
            "dynamo:latest-sglang-local-dev",
        ),
        (
            "trtllm",
            "framework",
            False,
            "docker/trtllm:framework",
            "dynamo:latest-trtllm-framework",
        ),
        (
            "vllm",
            "runtime",
            True,
            "docker/vllm:runtime-aws",
            "dynamo:latest-vllm-runtime-aws",
        ),
        (
            "dynamo",
            "dev",
            True,
            "docker/dynamo:dev-aws",
            "dynamo:latest-dynamo-dev-aws",
        ),
        ("vllm", "frontend", False, "docker/epp:runtime", "dynamo-images/epp:latest"),
    ],
)
def test_build_image_address_and_tag(
    framework: str, target: str, efa: bool, address: str, tag: str
) -> None:
    image = images.build_image(framework, target, efa)
    assert (image.pants_address, image.latest_tag) == (address, tag)
    # Every tag we produce maps back to the same table entry.
    assert images.image_for_tag(tag) == image


def test_docker_info_path_follows_pants_dist_layout() -> None:
    assert (
        images.build_image("vllm", "runtime", True).docker_info_path
        == "dist/docker.vllm/runtime-aws.docker-info.json"
    )


@pytest.mark.parametrize(
    ("framework", "target", "efa", "message"),
    [
        (
            "vllm",
            "debug",
            False,
            "unknown target 'debug'; accepted: runtime, dev, local-dev, pre-engine, framework,"
            " frontend",
        ),
        ("dynamo", "framework", False, "framework 'dynamo' has no engine"),
        (
            "vllm",
            "local-dev",
            True,
            "EFA images exist for targets runtime and dev only, not 'local-dev'",
        ),
        (
            "vllm",
            "frontend",
            True,
            "EFA images exist for targets runtime and dev only, not 'frontend'",
        ),
    ],
)
def test_build_image_rejections(framework: str, target: str, efa: bool, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        images.build_image(framework, target, efa)


def test_run_targets_include_efa_variants_only_for_runtime_and_dev() -> None:
    assert images.run_image("vllm", "runtime-aws").latest_tag == "dynamo:latest-vllm-runtime-aws"
    with pytest.raises(
        UsageError,
        match="unknown target 'local-dev-aws'; accepted: runtime, dev, local-dev, pre-engine, "
        "runtime-aws, "
        "dev-aws",
    ):
        images.run_image("vllm", "local-dev-aws")
    with pytest.raises(UsageError, match="unknown target 'framework'"):
        images.run_image("vllm", "framework")


def test_only_dev_runs_as_root() -> None:
    assert images.run_image("vllm", "dev").runs_as_root
    assert images.run_image("vllm", "dev-aws").runs_as_root
    assert not images.run_image("vllm", "runtime").runs_as_root
    assert not images.run_image("vllm", "local-dev").runs_as_root


@pytest.mark.parametrize(
    "tag",
    [
        "dynamo:latest-vllm",
        "dynamo:1.0-vllm-runtime",
        "nvcr.io/dynamo:latest-vllm-runtime",
        "dynamo:latest-tgi-runtime",
        "dynamo:latest-dynamo-framework",
        "dynamo:latest-vllm-local-dev-aws",
        "dynamo:latest-vllm-frontend",
        "dynamo:latest-epp-runtime",
    ],
)
def test_foreign_tags_are_not_in_the_table(tag: str) -> None:
    assert images.image_for_tag(tag) is None
