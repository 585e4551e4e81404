"""docker/epp:runtime says what it is: the build metadata the Python images carry (OCI version,
revision, source), the Go toolchain and module versions as labels, and `epp --version` printing
the same, on the real Docker engine. The container is removed, also on failure."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import docker
from built_images import built_image

EPP_INFO = Path("docker.epp/runtime.docker-info.json")


def go_mod_requirements() -> list[str]:
    text = Path("src/go/epp/go.mod").read_text()
    return [f"{m[1]}@{m[2]}" for m in re.finditer(r"^\s+(\S+) (v\S+)", text, re.MULTILINE)]


def test_labels_and_version_say_what_the_image_is() -> None:
    client = docker.from_env()
    image = built_image(EPP_INFO)
    labels = client.images.get(image).labels
    for key in ("version", "revision"):
        assert labels[f"org.opencontainers.image.{key}"] not in ("", "unknown", "unversioned"), key
    # The checkout's origin remote ("unknown" in a checkout without one), as for every image.
    assert labels["org.opencontainers.image.source"]
    go_version = tomllib.loads(Path("pants.toml").read_text())["DEFAULT"]["go_version"]
    assert labels["ai.dynamo.go.version"] == f"go{go_version}"
    modules = go_mod_requirements()
    assert labels["ai.dynamo.go.modules"].split(",") == modules

    out = client.containers.run(image, ["--version"], remove=True).decode()
    lines = out.splitlines()
    version, revision = (
        labels["org.opencontainers.image.version"],
        labels["org.opencontainers.image.revision"],
    )
    assert lines[0] == f"epp {version} (commit {revision})"
    assert lines[1].startswith(f"go go{go_version} ") and lines[1].endswith(" linux/amd64")
    assert lines[2:] == [f"module {m}" for m in modules]
