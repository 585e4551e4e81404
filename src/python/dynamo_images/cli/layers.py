"""`dynamo-images inspect IMAGE`: the per-layer report of an image in the local Docker engine.

Each filesystem layer with its size, what it holds (for the venv's layer slots: the
distributions and versions, from the manifest that venv_layers.py writes into each slot; for the
layers that add Debian packages, Go binaries, dev tools or our code: those, from the image's SBOM,
whose components name the instruction that adds them; else the instruction's paths) and which
other local images have the same layer at the same place in their chain (Docker stores those once).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import tarfile
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from dynamo_images.cli.engine import connect, sdk
from dynamo_images.cli.errors import EnvironmentProblem
from dynamo_images.cli.sbom import Entry, entries, image_sbom, read_file
from dynamo_images.venv_layers import MANIFEST_DIR

if TYPE_CHECKING:
    import docker
    from docker.models.images import Image

_SLOT_COPY = re.compile(r"^COPY /layers/(?P<slot>[^/\s]+)/ ")
_BUILDKIT_SUFFIX = re.compile(r"\s*# buildkit$")


@dataclass
class Layer:
    index: int
    diff_id: str
    size: int
    instruction: str
    slot: str | None = None
    distributions: dict[str, str] = field(default_factory=dict)
    # From the SBOM: "<kind>:<name>" -> version (kind: deb, golang, generic for our own code).
    packages: dict[str, str] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)
    shared_with: list[str] = field(default_factory=list)


@dataclass
class Report:
    image: str
    id: str
    size: int
    layers: list[Layer]


def _instruction(created_by: str) -> str:
    text = _BUILDKIT_SUFFIX.sub("", created_by.strip())
    return re.sub(r"^/bin/sh -c (#\(nop\) )?", "", text).strip()


def _is_filesystem_step(instruction: str) -> bool:
    # BuildKit records a layer for each of these (WORKDIR's may be empty), and none for the rest.
    return instruction.startswith(("COPY", "ADD", "RUN", "WORKDIR")) or bool(
        re.match(r"^\|\d+ ", instruction)
    )


def _paths(instruction: str) -> list[str]:
    """The destination of a COPY/ADD, else nothing (a RUN's paths are whatever it wrote)."""
    words = [w for w in instruction.split() if not w.startswith("--")]
    if words and words[0] in ("COPY", "ADD") and len(words) >= 3:
        if words[-1] == "/":  # an archive or a files stage's tree unpacked at the root: name it
            return [f"{' '.join(words[1:-1])} -> /"]
        return [words[-1]]
    return []


def _venv(image: Image) -> str | None:
    for variable in image.attrs["Config"].get("Env") or []:
        name, _, value = variable.partition("=")
        if name == "VIRTUAL_ENV":
            return value
    return None


def _manifests(client: docker.DockerClient, image: Image) -> dict[str, dict]:
    """The slot manifests inside the image's venv, read from a created (never started) container."""
    venv = _venv(image)
    if venv is None:
        return {}
    archive = read_file(client, image, f"{venv}/{MANIFEST_DIR}")
    if archive is None:
        return {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        out = {}
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".json"):
                file = tar.extractfile(member)
                assert file is not None  # extractfile() is None only for non-files
                manifest = json.load(file)
                out[manifest["slot"]] = manifest
        return out


def attribute(layer: Layer, sbom: list[Entry]) -> None:
    """Fill in what the SBOM says this layer adds: components whose layer text is part of the
    layer's instruction (Python ones among the distributions, the others as packages)."""
    for entry in sbom:
        if not entry.layer or entry.layer not in layer.instruction:
            continue
        if entry.kind == "pypi":
            layer.distributions.setdefault(entry.name, entry.version)
        else:
            layer.packages[f"{entry.kind}:{entry.name}"] = entry.version


def _chains(layers: list[str]) -> list[tuple[str, ...]]:
    return [tuple(layers[: i + 1]) for i in range(len(layers))]


def layer_report(client: docker.DockerClient, reference: str) -> Report:
    try:
        image = client.images.get(reference)
    except sdk().errors.ImageNotFound as error:
        raise EnvironmentProblem(f"no image '{reference}' in the local Docker engine") from error
    diff_ids = image.attrs["RootFS"]["Layers"]
    # History is newest first and also lists metadata-only steps (ENV, LABEL, ...).
    steps = [
        (_instruction(row.get("CreatedBy", "")), int(row.get("Size", 0)))
        for row in reversed(client.api.history(image.id))
    ]
    filesystem = [(text, size) for text, size in steps if _is_filesystem_step(text)]
    if len(filesystem) != len(diff_ids):
        # An image made some other way (e.g. docker import): sizes by position are unknown.
        filesystem = [("(unknown step)", 0)] * len(diff_ids)
    manifests = _manifests(client, image)
    document = image_sbom(client, image.id or reference)
    sbom = entries(document) if document else []
    chains = _chains(diff_ids)
    others: dict[tuple[str, ...], list[str]] = {}
    for other in client.images.list():
        if other.id == image.id:
            continue
        name = other.tags[0] if other.tags else other.short_id
        for chain in _chains(other.attrs["RootFS"]["Layers"]):
            others.setdefault(chain, []).append(name)
    layers = []
    for index, (diff_id, (text, size)) in enumerate(zip(diff_ids, filesystem, strict=True)):
        layer = Layer(index, diff_id, size, text, paths=_paths(text))
        slot = _SLOT_COPY.match(text)
        if slot:
            layer.slot = slot["slot"]
            manifest = manifests.get(layer.slot, {})
            layer.distributions = dict(manifest.get("distributions", {}))
            layer.paths = list(manifest.get("paths", []))
        else:
            attribute(layer, sbom)
        layer.shared_with = sorted(set(others.get(chains[index], [])))
        layers.append(layer)
    # docker-py types Model.id as optional; an image that the engine just returned has one.
    assert image.id is not None
    return Report(reference, image.id, int(image.attrs.get("Size", 0)), layers)


def human_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError


# How render() names the kinds of packages (package URL types) the SBOM lists.
KIND_NAMES = {"deb": "Debian", "golang": "Go", "generic": "ours"}


def _summaries(layer: Layer) -> list[str]:
    out = []
    if layer.distributions:
        out.append(", ".join(f"{name} {version}" for name, version in layer.distributions.items()))
    by_kind: dict[str, list[str]] = {}
    for key, version in sorted(layer.packages.items()):
        kind, _, name = key.partition(":")
        by_kind.setdefault(kind, []).append(f"{name} {version}")
    for kind, items in by_kind.items():
        out.append(f"{KIND_NAMES.get(kind, kind)} ({len(items)}): {', '.join(items)}")
    return out


def _shorten(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def render(report: Report) -> str:
    lines = [
        f"{report.image} ({report.id[:19]}): {len(report.layers)} layers, {human_size(report.size)}"
    ]
    for layer in report.layers:
        what = layer.slot and f"[{layer.slot}] " or ""
        if layer.distributions or layer.packages:
            held = "; ".join(_summaries(layer))
        elif layer.slot and not layer.paths:
            held = "(empty: no distribution of this image falls here)"
        else:
            held = ", ".join(layer.paths) or _shorten(layer.instruction)
        lines.append(f"{layer.index:3d} {human_size(layer.size):>9}  {what}{held}")
        if layer.shared_with:
            lines.append(f"{'':14}shared with {', '.join(layer.shared_with)}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="image reference or id in the local engine")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def command(args: argparse.Namespace) -> int:
    report = layer_report(connect(), args.image)
    print(json.dumps(asdict(report), indent=1) if args.json else render(report))
    return 0
