"""`dynamo-images sbom IMAGE`: the CycloneDX SBOM an image carries (build-support/sbom made it
from the image's inputs; the label ai.dynamo.sbom names its path in the image), read from a
created, never started, container. Also what `inspect` and `diff` read to name the Debian
packages, Go modules and inputs of each layer."""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dynamo_images.cli.engine import connect, sdk
from dynamo_images.cli.errors import EnvironmentProblem

if TYPE_CHECKING:
    import docker
    from docker.models.images import Image

# framework_image() (pants-plugins/macros.py) and the docs and EPP Dockerfiles set it.
SBOM_LABEL = "ai.dynamo.sbom"
# Properties build-support/sbom/make_sbom.py sets on each component.
INPUT = "dynamo-images:input"
LAYER = "dynamo-images:layer"


def read_file(client: docker.DockerClient, image: Image, path: str) -> bytes | None:
    """A file (or a folder, as a tar stream) in an image, or None where it has none."""
    container = client.containers.create(image, command=["true"], entrypoint=[])
    try:
        try:
            stream, _ = container.get_archive(path)
        except sdk().errors.NotFound:
            return None
        return b"".join(stream)
    finally:
        container.remove(force=True)


def _image(client: docker.DockerClient, reference: str) -> Image:
    try:
        return client.images.get(reference)
    except sdk().errors.ImageNotFound as error:
        raise EnvironmentProblem(f"no image '{reference}' in the local Docker engine") from error


def image_sbom(client: docker.DockerClient, reference: str) -> dict[str, Any] | None:
    """The image's SBOM, or None when the image carries none (no ai.dynamo.sbom label)."""
    image = _image(client, reference)
    path = (image.labels or {}).get(SBOM_LABEL)
    if not path:
        return None
    archive = read_file(client, image, path)
    if archive is None:
        raise EnvironmentProblem(f"{reference}: label {SBOM_LABEL} names {path}, which it lacks")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.next()
        file = tar.extractfile(member) if member else None
        if file is None:
            raise EnvironmentProblem(f"{reference}: {path} is not a file")
        return json.load(file)


@dataclass(frozen=True)
class Entry:
    """One SBOM component, as inspect and diff use it."""

    kind: str  # pypi, deb, golang, generic (the package URL's type)
    name: str
    version: str
    input: str = ""  # the file it comes from (lockfile, package lock, go.mod)
    layer: str = ""  # text of the instruction that adds it


def entries(document: dict[str, Any]) -> list[Entry]:
    out = []
    for component in document.get("components", []):
        props = {p["name"]: p["value"] for p in component.get("properties", [])}
        purl = component.get("purl", "")
        kind = purl[4:].split("/", 1)[0] if purl.startswith("pkg:") else component.get("type", "")
        name = component["name"]
        if component.get("group"):
            name = f"{component['group']}/{name}"
        out.append(
            Entry(
                kind, name, component.get("version", ""), props.get(INPUT, ""), props.get(LAYER, "")
            )
        )
    return out


@dataclass
class Changes:
    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)


def compare_entries(a: list[Entry], b: list[Entry]) -> dict[str, Changes]:
    """Per input (lockfile, package lock, ...): the components added, removed or at another
    version from SBOM a to SBOM b."""

    def index(items: list[Entry]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for e in items:
            out.setdefault(e.input or e.kind, {})[f"{e.kind}:{e.name}"] = e.version
        return out

    ia, ib = index(a), index(b)
    out = {}
    for source in sorted(ia.keys() | ib.keys()):
        da, db = ia.get(source, {}), ib.get(source, {})
        changes = Changes(
            {n: v for n, v in db.items() if n not in da},
            {n: v for n, v in da.items() if n not in db},
            {n: (da[n], db[n]) for n in sorted(da.keys() & db.keys()) if da[n] != db[n]},
        )
        if changes.added or changes.removed or changes.changed:
            out[source] = changes
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="image reference or id in the local engine")


def command(args: argparse.Namespace) -> int:
    document = image_sbom(connect(), args.image)
    if document is None:
        raise EnvironmentProblem(
            f"{args.image} carries no SBOM (no {SBOM_LABEL} label): images this project builds"
            " carry one, except docker/base:runtime, whose SBOM ./pants package writes to"
            " dist/docker.base/runtime.cdx.json"
        )
    print(json.dumps(document, indent=1))
    return 0
