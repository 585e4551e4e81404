"""docker/vllm:dev on the real Docker engine: root, developer tools, pytest beside vLLM, the source
tree at /workspace, on the runtime image's layers. Every container is removed, also on failure."""

from __future__ import annotations

from pathlib import Path

from built_images import built_image
from containers import layer_ids, run_in_image

PROBE = """
set -e
id -u
python -c 'import vllm, dynamo.vllm, pytest; print("imports-ok")'
test -f /workspace/pants.toml && echo workspace-ok
su dynamo -s /bin/sh -c 'sudo -n id -u'
"""


def test_dev_image_has_vllm_pytest_and_sources() -> None:
    ran = run_in_image(built_image(Path("docker.vllm/dev.docker-info.json")), PROBE)
    assert ran.status == 0, ran.err[-3000:]
    assert ran.out.split() == ["0", "imports-ok", "workspace-ok", "0"]
    assert ran.err.startswith("== vllm-dev ")


def test_dev_image_is_the_runtime_image_plus_dev_layers() -> None:
    runtime = layer_ids(built_image(Path("docker.vllm/runtime.docker-info.json")))
    dev = layer_ids(built_image(Path("docker.vllm/dev.docker-info.json")))
    assert dev[: len(runtime)] == runtime
