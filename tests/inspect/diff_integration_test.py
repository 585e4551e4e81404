"""`dynamo-images diff` between docker/dynamo:runtime and its EFA variant on the real Docker
engine: every layer of the runtime image shared, one more layer (the EFA overlay), and the EFA
labels named as the inputs that differ."""

from __future__ import annotations

from pathlib import Path

import docker
from built_images import built_image
from containers import layer_ids
from efa_image_checks import LABELLED, pinned

from dynamo_images.cli.diff import diff_images


def test_the_efa_variant_is_the_runtime_image_plus_one_layer() -> None:
    runtime = built_image(Path("docker.dynamo/runtime.docker-info.json"))
    efa = built_image(Path("docker.dynamo/runtime-aws.docker-info.json"))
    diff = diff_images(docker.from_env(), runtime, efa)
    assert diff.shared_layers == len(layer_ids(runtime)) and not diff.base_differs
    [added] = diff.layers
    assert (added.a, added.b) == ("", "docker/base/efa-overlay.tar.gz -> /")
    versions = pinned()
    assert diff.inputs == {label: ("", versions[package]) for label, package in LABELLED.items()}
