"""docker/dynamo:dev on the real Docker engine: root, developer tools, pytest next to Dynamo, and
the source tree at /workspace. Every container is removed, also on failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from built_images import built_image
from containers import layer_ids, run_in_image

DOCKER_INFO = Path("docker.dynamo/dev.docker-info.json")

PROBE = """
set -e
id -u
for tool in git curl jq strace sudo; do command -v $tool; done
python -c 'import dynamo.frontend, dynamo_images.launch, pytest; print("imports-ok")'
pytest --version
test -f /workspace/pants.toml && test -f /workspace/src/python/dynamo_images/launch.py \
  && echo workspace-ok
# Sources only: no build output (e.g. the 92 MB rootfs a test depends on) rides along into
# /workspace. The largest source file, the lockfile, is ~0.2 MB.
echo "big files: $(find /workspace -type f -size +1M | sort | tr '\n' ' ')"
su dynamo -s /bin/sh -c 'sudo -n id -u'
"""


@pytest.fixture(scope="module")
def image() -> str:
    return built_image(DOCKER_INFO)


def test_dev_image_has_tools_pytest_and_sources(image: str) -> None:
    ran = run_in_image(image, PROBE, timeout=120)
    status, out, err = ran.status, ran.out.splitlines(), ran.err
    assert status == 0, f"stdout: {out}\nstderr: {err}"
    assert out[0] == "0", "dev runs as root"
    assert [Path(p).name for p in out[1:6]] == ["git", "curl", "jq", "strace", "sudo"]
    assert "imports-ok" in out
    assert any(line.startswith("pytest ") for line in out)
    assert "workspace-ok" in out
    assert "big files: " in out, "build outputs in /workspace"
    assert out[-1] == "0", "user dynamo has passwordless sudo"
    assert err.startswith("== dynamo-dev ")


def test_dev_image_shares_the_runtime_layers(image: str) -> None:
    runtime_layers = layer_ids(built_image("docker.dynamo/runtime.docker-info.json"))
    assert layer_ids(image)[: len(runtime_layers)] == runtime_layers
