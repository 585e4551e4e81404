"""`dynamo-images diff` between docker/dynamo:runtime and its EFA variant on the real Docker
engine: every layer of the runtime image shared, one more layer (the EFA overlay), and the EFA
labels named as the inputs that differ."""

from __future__ import annotations

from pathlib import Path

import docker
from built_images import built_image
from containers import layer_ids

from dynamo_images.cli.diff import diff_images

EFA_LOCK = Path("docker/base/efa-packages.lock")


def test_the_efa_variant_is_the_runtime_image_plus_one_layer() -> None:
    runtime = built_image(Path("docker.dynamo/runtime.docker-info.json"))
    efa = built_image(Path("docker.dynamo/runtime-aws.docker-info.json"))
    diff = diff_images(docker.from_env(), runtime, efa)
    assert diff.shared_layers == len(layer_ids(runtime)) and not diff.base_differs
    [added] = diff.layers
    assert (added.a, added.b) == ("", "docker/base/efa-overlay.tar.gz -> /")
    pinned = dict(line.split()[:2] for line in EFA_LOCK.read_text().splitlines())
    assert diff.inputs == {
        "ai.dynamo.efa.libfabric.version": ("", pinned["libfabric1"]),
        "ai.dynamo.efa.rdma-core.version": ("", pinned["libibverbs1"]),
    }
