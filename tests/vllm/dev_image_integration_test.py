"""docker/vllm:dev on the real Docker engine: root, developer tools, pytest beside vLLM, the source
tree at /workspace, on the runtime image's layers. Every container is removed, also on failure."""

from __future__ import annotations

from pathlib import Path

import docker
from built_images import built_image

PROBE = """
set -e
id -u
python -c 'import vllm, dynamo.vllm, pytest; print("imports-ok")'
test -f /workspace/pants.toml && echo workspace-ok
su dynamo -s /bin/sh -c 'sudo -n id -u'
"""


def test_dev_image_has_vllm_pytest_and_sources() -> None:
    image = built_image(Path("docker.vllm/dev.docker-info.json"))
    client = docker.from_env()
    container = client.containers.run(image, ["sh", "-c", PROBE], detach=True)
    try:
        status = container.wait(timeout=300)["StatusCode"]
        out = container.logs(stdout=True, stderr=False).decode().split()
        err = container.logs(stdout=False, stderr=True).decode()
    finally:
        container.remove(force=True)
    assert status == 0, err[-3000:]
    assert out == ["0", "imports-ok", "workspace-ok", "0"]
    assert err.startswith("== vllm-dev ")


def test_dev_image_is_the_runtime_image_plus_dev_layers() -> None:
    client = docker.from_env()
    runtime = client.images.get(built_image(Path("docker.vllm/runtime.docker-info.json")))
    dev = client.images.get(built_image(Path("docker.vllm/dev.docker-info.json")))
    runtime_layers = runtime.attrs["RootFS"]["Layers"]
    assert dev.attrs["RootFS"]["Layers"][: len(runtime_layers)] == runtime_layers
