"""`dynamo-images build`'s steps after Pants, on a real Docker engine.

A stand-in `./pants` in a throwaway checkout does what `./pants package` does to the engine (tag
the new image with the target's latest tag, write dist/<...>.docker-info.json); the CLI's own
`--tag` and `--no-tag-latest` steps then run for real. Needs a Docker engine (fails without one).
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from docker.errors import ImageNotFound

from dynamo_images.cli.main import main

# A target whose image no test environment builds for real; its latest tag is saved and put back.
FRAMEWORK, TARGET = "sglang", "framework"
LATEST_TAG = "dynamo:latest-sglang-framework"
LATEST_REPOSITORY, LATEST_TAG_NAME = LATEST_TAG.split(":")  # as docker-py's tag() takes it
DOCKER_INFO = "dist/docker.sglang/framework.docker-info.json"
SCRATCH_REPOSITORY = "dynamo-images-test/scratch"

STAND_IN_PANTS = """#!{python}
# Stand-in for ./pants: record the call, then do to the engine what `./pants package` would.
import json, os, sys
import docker

with open("pants-calls.jsonl", "a") as calls:
    env = {{k: v for k, v in os.environ.items() if k.startswith("DYNAMO_")}}
    calls.write(json.dumps({{"argv": sys.argv[1:], "env": env}}) + "\\n")
if os.environ["STAND_IN_EXIT"] != "0":
    sys.exit(int(os.environ["STAND_IN_EXIT"]))
client = docker.from_env()
built = client.images.get(os.environ["STAND_IN_BUILT_IMAGE"])
built.tag("{latest_repository}", "{latest_tag}")
os.makedirs(os.path.dirname("{info}"), exist_ok=True)
with open("{info}", "w") as info:
    json.dump({{"version": 1, "image_id": built.id, "registries": []}}, info)
"""


def scratch_image(client: docker.DockerClient, tag: str) -> str:
    """A one-file image made locally (no registry needed); its content makes its id unique."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        content = tag.encode()
        member = tarfile.TarInfo("id.txt")
        member.size = len(content)
        tar.addfile(member, io.BytesIO(content))
    client.api.import_image_from_data(archive.getvalue(), repository=SCRATCH_REPOSITORY, tag=tag)
    image = client.images.get(f"{SCRATCH_REPOSITORY}:{tag}")
    assert image.id is not None  # docker-py types Model.id as optional
    return image.id


def image_id(client: docker.DockerClient, reference: str) -> str | None:
    try:
        return client.images.get(reference).id
    except ImageNotFound:
        return None


@dataclass(frozen=True)
class Setup:
    client: docker.DockerClient
    checkout: Path
    old_id: str
    new_id: str
    extra_tag: str


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    client = docker.from_env()  # raises (fails the test) when no engine answers
    run_id = uuid.uuid4().hex[:12]
    saved_latest = image_id(client, LATEST_TAG)
    old_id = scratch_image(client, f"{run_id}-old")
    new_id = scratch_image(client, f"{run_id}-new")
    extra_tag = f"dynamo-images-test/extra:{run_id}"

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "pants.toml").write_text("")
    # `build` builds only what docker/*/BUILD defines: define the target for the stand-in.
    (checkout / "docker" / FRAMEWORK).mkdir(parents=True)
    (checkout / "docker" / FRAMEWORK / "BUILD").write_text(f'docker_image(name="{TARGET}")\n')
    pants = checkout / "pants"
    pants.write_text(
        STAND_IN_PANTS.format(
            python=sys.executable,
            latest_repository=LATEST_REPOSITORY,
            latest_tag=LATEST_TAG_NAME,
            info=DOCKER_INFO,
        )
    )
    pants.chmod(0o755)
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    monkeypatch.setenv("STAND_IN_BUILT_IMAGE", f"{SCRATCH_REPOSITORY}:{run_id}-new")
    monkeypatch.setenv("STAND_IN_EXIT", "0")
    try:
        yield Setup(client, checkout, old_id, new_id, extra_tag)
    finally:
        for reference in (
            extra_tag,
            f"{SCRATCH_REPOSITORY}:{run_id}-old",
            f"{SCRATCH_REPOSITORY}:{run_id}-new",
        ):
            if image_id(client, reference):
                client.images.remove(reference, force=True)
        if saved_latest:
            client.api.tag(saved_latest, LATEST_REPOSITORY, LATEST_TAG_NAME)
        elif image_id(client, LATEST_TAG):
            client.images.remove(LATEST_TAG, force=True)


def pants_calls(checkout: Path) -> list[dict]:
    return [json.loads(line) for line in (checkout / "pants-calls.jsonl").read_text().splitlines()]


def build(*flags: str) -> int:
    return main(["build", "--framework", FRAMEWORK, "--target", TARGET, *flags])


def test_tag_and_no_tag_latest_put_back_the_previous_latest(
    setup: Setup, capfd: pytest.CaptureFixture[str]
) -> None:
    setup.client.api.tag(setup.old_id, LATEST_REPOSITORY, LATEST_TAG_NAME)
    exit_code = build(
        "--base-image",
        "localhost:5000/base-image:with-dash",
        "--tag",
        setup.extra_tag,
        "--no-tag-latest",
    )
    _, err = capfd.readouterr()
    assert exit_code == 0, err
    assert pants_calls(setup.checkout) == [
        {
            "argv": ["package", "docker/sglang:framework"],
            "env": {"DYNAMO_BASE_IMAGE": "localhost:5000/base-image:with-dash"},
        }
    ]
    assert image_id(setup.client, setup.extra_tag) == setup.new_id
    assert image_id(setup.client, LATEST_TAG) == setup.old_id


def test_no_tag_latest_removes_a_latest_tag_that_did_not_exist(
    setup: Setup, capfd: pytest.CaptureFixture[str]
) -> None:
    if image_id(setup.client, LATEST_TAG):
        setup.client.images.remove(LATEST_TAG)
    exit_code = build("--tag", setup.extra_tag, "--no-tag-latest")
    _, err = capfd.readouterr()
    assert exit_code == 0, err
    assert image_id(setup.client, LATEST_TAG) is None
    assert image_id(setup.client, setup.extra_tag) == setup.new_id


def test_plain_build_moves_latest(setup: Setup, capfd: pytest.CaptureFixture[str]) -> None:
    setup.client.api.tag(setup.old_id, LATEST_REPOSITORY, LATEST_TAG_NAME)
    assert build() == 0
    capfd.readouterr()
    assert image_id(setup.client, LATEST_TAG) == setup.new_id


def test_failed_pants_run_stops_the_build_with_its_exit_code(
    setup: Setup, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAND_IN_EXIT", "5")
    assert build("--tag", setup.extra_tag) == 5
    capfd.readouterr()
    assert image_id(setup.client, setup.extra_tag) is None
