"""The DYNAMO_BASE_IMAGE knob of docker/base:runtime, on the real Docker engine.

Builds docker/base/Dockerfile's runtime stage the way Pants does (BuildKit, --build-arg
DYNAMO_BASE_IMAGE=...) on two stand-in "upstream" images made from docker/base:runtime without
what its runtime stage adds: one with everything the base needs, one without etcd and
nats-server, which must fail with a clear message. Every image and container made here is removed.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from built_images import built_image

DOCKER = shutil.which("docker", path="/usr/bin") or "docker"
BASE_INFO = Path("docker.base/runtime.docker-info.json")
# What docker/base:runtime's runtime stage adds to the Debian root filesystem.
UNDO_RUNTIME_STAGE = (
    "userdel --remove dynamo && rm -rf /workspace /usr/local/bin/dynamo-entrypoint"
    " /etc/profile.d/umask.sh"
)


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return docker.from_env()


def docker_build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DOCKER, "build", *args, "docker/base"],  # the context root of docker/base:runtime
        env={"DOCKER_BUILDKIT": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


@pytest.fixture
def tags(client: docker.DockerClient) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for tag in made:
        try:
            client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass  # a build that failed tagged nothing


def upstream_image(client: docker.DockerClient, tags: list[str], remove: str = "") -> str:
    """A local image standing in for an upstream base (no registry is reachable)."""
    tag = f"dynamo-images-test/upstream:{uuid.uuid4().hex[:8]}"
    script = UNDO_RUNTIME_STAGE
    if remove:
        script += f" && for t in {remove}; do rm -f $(command -v $t); done"
    container = client.containers.run(
        built_image(BASE_INFO), ["-c", script], entrypoint=["sh"], user="root", detach=True
    )
    try:
        assert container.wait(timeout=60)["StatusCode"] == 0, container.logs().decode()
        container.commit(
            *tag.split(":"), changes=["ENTRYPOINT []", 'CMD ["bash"]', "USER root", "WORKDIR /"]
        )
    finally:
        container.remove(force=True)
    tags.append(tag)
    return tag


def build_runtime_on(base: str, tags: list[str]) -> subprocess.CompletedProcess:
    tag = f"dynamo-images-test/base-on-upstream:{uuid.uuid4().hex[:8]}"
    tags.append(tag)
    return docker_build(
        "--target", "runtime", "--build-arg", f"DYNAMO_BASE_IMAGE={base}", "-t", tag
    )


def test_base_builds_on_an_upstream_image_that_has_what_it_needs(client, tags) -> None:
    result = build_runtime_on(upstream_image(client, tags), tags)
    assert result.returncode == 0, result.stderr[-3000:]
    out = client.containers.run(tags[-1], ["id", "-un"], remove=True, stderr=False).decode().strip()
    assert out == "dynamo"


def test_upstream_image_without_etcd_and_nats_is_refused_by_name(client, tags) -> None:
    result = build_runtime_on(upstream_image(client, tags, remove="etcd nats-server"), tags)
    assert result.returncode != 0
    assert "DYNAMO_BASE_IMAGE lacks: nats-server etcd" in result.stderr
