"""`build --push --tag` against a real registry (host/registry_server.py: Debian's
docker-registry on a free loopback port, its storage under the test's tmp dir).

Round trip: push the docker/dynamo:runtime image under two tags, remove them locally, pull them
back, and get the same digest. A registry that is down, or refuses pushes (read-only), costs one
line and leaves no tag behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from built_images import built_image
from host.registry_server import free_port, running_registry
from host.registry_server import tags as registry_tags

from dynamo_images.cli import build, registry
from dynamo_images.cli.errors import EnvironmentProblem

IMAGE = built_image("docker.dynamo/runtime.docker-info.json")


@pytest.fixture
def engine() -> docker.DockerClient:
    client = docker.from_env()
    client.images.get(IMAGE)
    return client


@pytest.fixture
def registry_address(tmp_path: Path) -> Iterator[str]:
    with running_registry(tmp_path / "registry") as address:
        yield address


@pytest.fixture
def read_only_registry(tmp_path: Path) -> Iterator[str]:
    with running_registry(tmp_path / "read-only-registry", read_only=True) as address:
        yield address


@pytest.fixture
def tags_to_remove(engine: docker.DockerClient) -> Iterator[list[str]]:
    tags: list[str] = []
    yield tags
    for tag in tags:
        try:
            engine.images.remove(tag, noprune=True)
        except docker.errors.ImageNotFound:
            pass


def local_tags(engine: docker.DockerClient, prefix: str) -> list[str]:
    return sorted(t for image in engine.images.list() for t in image.tags if t.startswith(prefix))


def test_push_removes_and_pulls_back_the_same_digest(
    engine: docker.DockerClient,
    registry_address: str,
    tags_to_remove: list[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    repository = f"{registry_address}/dynamo-images-test/{uuid.uuid4().hex[:8]}"
    tags = (f"{repository}:one", f"{repository}:two")
    tags_to_remove += tags
    registry.check_reachable(registry_address)
    build.tag_and_push(engine, IMAGE, tags, push=True)
    pushed = engine.images.get(tags[0]).attrs["RepoDigests"]
    print("pushed:", *tags, "->", *pushed)

    # Exactly the asked tags are in the registry.
    assert registry_tags(registry_address, repository.split("/", 1)[1]) == ["one", "two"]

    for tag in tags:
        engine.images.remove(tag, noprune=True)
    assert local_tags(engine, repository) == []
    for tag in tags:
        pulled_repository, pulled_tag = tag.rsplit(":", 1)
        engine.images.pull(pulled_repository, tag=pulled_tag)
    pulled = engine.images.get(tags[0])
    print("pulled:", *tags, "->", *pulled.attrs["RepoDigests"])
    assert pulled.id == engine.images.get(IMAGE).id
    assert pulled.attrs["RepoDigests"] == pushed
    assert engine.images.get(tags[1]).id == pulled.id
    out = capfd.readouterr()
    assert f"+ docker push {tags[0]}" in out.err


def test_a_registry_that_is_down_costs_one_line() -> None:
    address = f"localhost:{free_port()}"  # nothing listens there
    with pytest.raises(EnvironmentProblem) as raised:
        registry.check_reachable(address)
    message = str(raised.value)
    assert message.startswith(f"registry {address} is not reachable at http://{address}/v2/ (")
    assert "\n" not in message


def test_a_refused_push_leaves_no_tag(
    engine: docker.DockerClient, read_only_registry: str, tags_to_remove: list[str]
) -> None:
    repository = f"{read_only_registry}/dynamo-images-test/{uuid.uuid4().hex[:8]}"
    tags = (f"{repository}:refused",)
    tags_to_remove += tags
    registry.check_reachable(read_only_registry)  # up, but read-only
    with pytest.raises(EnvironmentProblem) as raised:
        build.tag_and_push(engine, IMAGE, tags, push=True)
    message = str(raised.value)
    assert message.startswith(f"docker push {tags[0]} failed: ")
    assert "\n" not in message
    assert local_tags(engine, repository) == []
