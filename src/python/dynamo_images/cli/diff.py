"""`dynamo-images diff IMAGE_A IMAGE_B`: why two images differ, layer by layer.

The layers both images have at the same place in their chain are shared (Docker stores them
once). For each position past that, the two layers are compared by what they hold: for the
venv's layer slots, the distributions added, removed or at another version (from the slot
manifests, as `inspect` reads them); for the layers that add Debian packages, Go modules or our
code, those (from the SBOMs); for other layers, the instruction. The inputs responsible are named
from the labels every image carries (the lockfile digests, the commit, whether the base, the first
layer, differs) and from the SBOMs: per input file (a lockfile, a package lock, go.mod), the
components it added, removed or moved to another version.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from dynamo_images.cli.engine import connect
from dynamo_images.cli.layers import Layer, Report, human_size, layer_report
from dynamo_images.cli.sbom import Changes, compare_entries, entries, image_sbom

if TYPE_CHECKING:
    import docker

# Labels that name an input of the build (prefix match for the per-resolve lock digests).
INPUT_LABELS = ("ai.dynamo.lock.", "org.opencontainers.image.revision", "ai.dynamo.efa.")


@dataclass
class LayerDiff:
    index: int
    a: str  # what the layer holds in A ("" when A has no layer here)
    b: str
    size_a: int
    size_b: int
    slot: str | None = None
    # The same files (diff ID), stored again all the same: an earlier layer of the chain differs.
    same_content: bool = False
    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class ImageDiff:
    a: str
    b: str
    shared_layers: int
    shared_bytes: int
    layers: list[LayerDiff]
    # label -> (value in A, value in B); "" where an image lacks the label
    inputs: dict[str, tuple[str, str]]
    base_differs: bool
    # SBOM input file -> the components it added, removed or changed ("<kind>:<name>" keys)
    components: dict[str, Changes] = field(default_factory=dict)


def _holds(layer: Layer | None) -> str:
    if layer is None:
        return ""
    if layer.slot:
        return f"[{layer.slot}]"
    return ", ".join(layer.paths) or layer.instruction


def _layer_diff(index: int, a: Layer | None, b: Layer | None) -> LayerDiff:
    out = LayerDiff(index, _holds(a), _holds(b), a.size if a else 0, b.size if b else 0)
    out.same_content = a is not None and b is not None and a.diff_id == b.diff_id
    # What each side holds (distributions and packages); a layer only one image has is all
    # added (or removed). Two slot layers are compared only when they are the same slot.
    if a is not None and b is not None and a.slot and a.slot == b.slot:
        out.slot = a.slot
    if a is None or b is None or out.slot or not (a.slot or b.slot):
        da = {**a.distributions, **a.packages} if a else {}
        db = {**b.distributions, **b.packages} if b else {}
        out.added = {n: v for n, v in db.items() if n not in da}
        out.removed = {n: v for n, v in da.items() if n not in db}
        out.changed = {n: (da[n], db[n]) for n in da.keys() & db.keys() if da[n] != db[n]}
    return out


def compare(
    a: Report,
    b: Report,
    labels_a: dict[str, str],
    labels_b: dict[str, str],
    components: dict[str, Changes] | None = None,
) -> ImageDiff:
    shared = 0
    for la, lb in zip(a.layers, b.layers, strict=False):
        if la.diff_id != lb.diff_id:
            break
        shared += 1
    length = max(len(a.layers), len(b.layers))
    layers = [
        _layer_diff(
            i,
            a.layers[i] if i < len(a.layers) else None,
            b.layers[i] if i < len(b.layers) else None,
        )
        for i in range(shared, length)
    ]
    inputs = {
        key: (labels_a.get(key, ""), labels_b.get(key, ""))
        for key in sorted(labels_a.keys() | labels_b.keys())
        if key.startswith(INPUT_LABELS) and labels_a.get(key) != labels_b.get(key)
    }
    return ImageDiff(
        a=a.image,
        b=b.image,
        shared_layers=shared,
        shared_bytes=sum(layer.size for layer in a.layers[:shared]),
        layers=layers,
        inputs=inputs,
        base_differs=shared == 0,
        components=components or {},
    )


def diff_images(client: docker.DockerClient, image_a: str, image_b: str) -> ImageDiff:
    """compare() of two images in the local engine, with their labels."""
    report_a, report_b = layer_report(client, image_a), layer_report(client, image_b)
    labels_a = client.images.get(image_a).labels or {}
    labels_b = client.images.get(image_b).labels or {}
    sbom_a, sbom_b = image_sbom(client, image_a), image_sbom(client, image_b)
    components = None
    if sbom_a is not None and sbom_b is not None:
        components = compare_entries(entries(sbom_a), entries(sbom_b))
    return compare(report_a, report_b, labels_a, labels_b, components)


def _changes(changes: Changes) -> str:
    parts = [f"+{n} {v}" for n, v in sorted(changes.added.items())]
    parts += [f"-{n} {v}" for n, v in sorted(changes.removed.items())]
    parts += [f"{n} {va} -> {vb}" for n, (va, vb) in sorted(changes.changed.items())]
    return ", ".join(parts)


def render(diff: ImageDiff) -> str:
    lines = [
        f"{diff.a} vs {diff.b}: {diff.shared_layers} layers shared"
        f" ({diff.shared_bytes / 1e9:.2f} GB), {len(diff.layers)} positions differ"
    ]
    if diff.base_differs:
        lines.append("  the base differs (first layer)")
    for key, (va, vb) in diff.inputs.items():
        lines.append(f"  input {key}: {va or '(none)'} -> {vb or '(none)'}")
    for source, changes in diff.components.items():
        lines.append(f"  sbom {source}: {_changes(changes)}")
    for layer in diff.layers:
        if layer.same_content:
            lines.append(
                f"{layer.index:3d} {layer.a} {human_size(layer.size_a)}: the same files,"
                " stored again (an earlier layer differs)"
            )
        elif layer.slot or layer.added or layer.removed or layer.changed:
            what = _changes(Changes(layer.added, layer.removed, layer.changed))
            what = what or "same contents, other files"
            sizes = f"{human_size(layer.size_a)} -> {human_size(layer.size_b)}"
            where = f"[{layer.slot}]" if layer.slot else layer.b or layer.a
            lines.append(f"{layer.index:3d} {where} {sizes}: {what}")
        else:
            a = f"{layer.a} ({human_size(layer.size_a)})" if layer.a else "(none)"
            b = f"{layer.b} ({human_size(layer.size_b)})" if layer.b else "(none)"
            lines.append(f"{layer.index:3d} {a} | {b}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image_a", help="image reference or id in the local engine")
    parser.add_argument("image_b", help="the image to compare it with")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def command(args: argparse.Namespace) -> int:
    diff = diff_images(connect(), args.image_a, args.image_b)
    print(json.dumps(asdict(diff), indent=1) if args.json else render(diff))
    return 0
