"""Split a virtualenv into per-layer trees by distribution, for separate Docker layers.

A deps PEX unpacks into one venv, which Docker could only cache as one layer: every lock change
would resend all of it, and an engine venv is too big for one layer to pull well. This script
moves each installed distribution's files (its RECORD, plus the bytecode compiled for them) into
one of the layer slots of the groups it is given (VENV_LAYER_GROUPS in pants-plugins/macros.py,
least-changing first). The image COPYs each slot
(`/layers/<slot>/`) into the same venv path as its own layer, so:
  - a Dynamo upgrade or a lock change resends only the slots whose distributions changed;
  - two engines' images with the same CUDA/torch wheels get identical slot trees (the assignment
    depends only on the installed distributions), which Docker can store once;
  - no layer exceeds MAX_LAYER_BYTES.
Each slot also holds `.dynamo-layers/<slot>.json` (its distributions and size), read by the layer
report (`dynamo-images inspect`).

Run by the image build with the base image's python and nothing but the standard library:
    python3 venv_layers.py VENV DEST --groups 'cuda:5:nvidia-*,cuda-* torch:1:torch ... rest:4:*'

"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict

# Upstream split its venv for parallel pulls (ai-dynamo/dynamo PR #5494); registries and Docker
# pull layers of this size well.
MAX_LAYER_BYTES = 1_500_000_000
# A layer is a tar: each file costs a 512-byte header and its data rounded up to 512 bytes, and a
# slot also holds its folders and manifest. Slots are filled against these costs, with room to
# spare for the folders, so that the layer Docker reports stays under MAX_LAYER_BYTES.
TAR_BLOCK = 512
SLOT_RESERVE = 8_000_000
# The slot holding files no distribution owns (the venv's python links, pyvenv.cfg, pex's files).
VENV_SLOT = "venv"
MANIFEST_DIR = ".dynamo-layers"
# Every file and folder of a slot gets this mtime (2000-01-01): Docker keeps mtimes in layers, so
# the same distributions make the same layer whenever and for whichever engine they are unpacked.
FIXED_MTIME = 946684800


class Manifest(TypedDict):
    """A slot's `.dynamo-layers/<slot>.json`."""

    slot: str
    bytes: int  # what the distributions' files cost in the layer's tar (tar_bytes)
    distributions: dict[str, str]
    paths: NotRequired[list[str]]  # VENV_SLOT's only: the files no distribution owns


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Group:
    """Distributions that share layer slots `<name>-1` ... `<name>-<slots>` (or `<name>`)."""

    name: str
    slots: int
    patterns: tuple[str, ...]  # fnmatch patterns of normalized names; "*" takes the rest

    def slot_names(self) -> list[str]:
        if self.slots == 1:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(1, self.slots + 1)]

    def matches(self, dist: str) -> bool:
        return any(fnmatch.fnmatchcase(dist, normalize(p)) for p in self.patterns)


def parse_groups(spec: str) -> tuple[Group, ...]:
    """`name:slots:pattern,pattern name:slots:-` (the form pants-plugins/macros.py writes)."""
    groups = []
    for word in spec.split():
        try:
            name, slots, patterns = word.split(":")
            group = Group(name, int(slots), tuple(p for p in patterns.split(",") if p != "-"))
        except ValueError:
            raise SystemExit(
                f"venv_layers: bad group {word!r}; expected NAME:SLOTS:PATTERN,..."
            ) from None
        if group.slots < 1 or group.name == VENV_SLOT:
            raise SystemExit(f"venv_layers: bad group {word!r}")
        groups.append(group)
    if sum("*" in g.patterns for g in groups) != 1:
        raise SystemExit("venv_layers: exactly one group must take the rest ('*')")
    return tuple(groups)


def group_of(groups: tuple[Group, ...], dist: str) -> Group:
    named = [g for g in groups if "*" not in g.patterns and g.matches(dist)]
    return named[0] if named else next(g for g in groups if "*" in g.patterns)


def slot_names(groups: tuple[Group, ...]) -> list[str]:
    """Every slot, in image order (the VENV_SLOT last)."""
    return [slot for group in groups for slot in group.slot_names()] + [VENV_SLOT]


def find_dist_infos(site_packages: Path) -> dict[str, Path]:
    return {normalize(p.name.split("-")[0]): p for p in sorted(site_packages.glob("*.dist-info"))}


def dist_files(site_packages: Path, dist_info: Path) -> list[Path]:
    """Files (relative to site-packages, possibly ../../../bin/x) that the distribution owns,
    with the bytecode compiled for its modules."""
    with (dist_info / "RECORD").open(newline="") as f:
        listed = {Path(row[0]) for row in csv.reader(f) if row}
    listed |= {p.relative_to(site_packages) for p in dist_info.rglob("*") if p.is_file()}
    compiled = set()
    for rel in listed:
        if rel.suffix == ".py":
            cache = site_packages / rel.parent / "__pycache__"
            compiled |= {p.relative_to(site_packages) for p in cache.glob(f"{rel.stem}.*.pyc")}
    return sorted(listed | compiled)


def _existing(site_packages: Path, venv: Path, rels: Iterable[Path]) -> list[Path]:
    """Venv-relative paths of the files that exist (RECORD may list files never written, and two
    distributions may list the same file: the first one takes it)."""
    out = []
    for rel in rels:
        source = (site_packages / rel).resolve()
        if source.is_file() and not source.is_symlink():
            out.append(source.relative_to(venv.resolve()))
    return out


SLOT_BUDGET = MAX_LAYER_BYTES - SLOT_RESERVE


def tar_bytes(path: Path) -> int:
    """What the file costs in a layer's tar: a header block and its data in whole blocks."""
    size = path.lstat().st_size
    return TAR_BLOCK + -(-size // TAR_BLOCK) * TAR_BLOCK


def assign_slots(sizes: dict[str, int], groups: tuple[Group, ...]) -> dict[str, list[str]]:
    """Distribution name -> slot: the first matching group, then the first of its slots with room
    (distributions in name order), so the result depends only on the installed set."""
    slots: dict[str, list[str]] = {slot: [] for slot in slot_names(groups)}
    used = {slot: 0 for slot in slots}
    for dist in sorted(sizes):
        group = group_of(groups, dist)
        if sizes[dist] > MAX_LAYER_BYTES:
            raise SystemExit(
                f"venv_layers: {dist} alone is {sizes[dist] / 1e9:.2f} GB, over the"
                f" {MAX_LAYER_BYTES / 1e9:.1f} GB layer limit"
            )
        slot = next((s for s in group.slot_names() if used[s] + sizes[dist] <= SLOT_BUDGET), None)
        if slot is None:
            total = sum(sizes[d] for d in sizes if group_of(groups, d) == group)
            raise SystemExit(
                f"venv_layers: group {group.name!r} holds {total / 1e9:.2f} GB, more than its"
                f" {group.slots} slots of {MAX_LAYER_BYTES / 1e9:.1f} GB; give it more slots in"
                " VENV_LAYER_GROUPS (pants-plugins/macros.py)"
            )
        slots[slot].append(dist)
        used[slot] += sizes[dist]
    return slots


def _move(venv: Path, dest: Path, rel: Path) -> None:
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(venv / rel), str(target))


def _remove_empty_dirs(root: Path) -> None:
    for folder in sorted(
        (p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()),
        key=lambda p: len(p.parts),
        reverse=True,
    ):
        if not any(folder.iterdir()):
            folder.rmdir()


def split_into_slots(
    venv: Path, dest: Path, groups: tuple[Group, ...], under: Path = Path()
) -> dict[str, Manifest]:
    """Empty `venv` into `dest/<slot>/<under>` trees; returns each slot's manifest. With `under`
    the venv's own path, each slot tree holds its parent folders too, so that a layer copied to /
    gets them with the fixed mtime instead of whenever Docker created them."""
    site_packages = next(venv.glob("lib/python*/site-packages"))
    files: dict[str, list[Path]] = {}
    versions: dict[str, str] = {}
    dist_infos = find_dist_infos(site_packages)
    for dist, info in dist_infos.items():
        files[dist] = _existing(site_packages, venv, dist_files(site_packages, info))
        versions[dist] = info.name[: -len(".dist-info")].split("-", 1)[1]
    # A file several distributions list (pex venv --collisions-ok kept one: flashinfer-python's
    # and torch-c-dlpack-ext's build_backend.py) depends on which of them are installed, and so
    # does the RECORD of each (pex rewrites it): such files stay in the venv's own slot, so that
    # a distribution's slot is the same in every engine's image (the shared layers).
    listed_by = Counter(rel for rels in files.values() for rel in set(rels))
    contested = {rel for rel, count in listed_by.items() if count > 1}
    for dist, info in dist_infos.items():
        if contested.intersection(files[dist]):
            contested.add((info / "RECORD").resolve().relative_to(venv.resolve()))
    for dist in files:
        files[dist] = [rel for rel in files[dist] if rel not in contested]
    sizes = {dist: sum(tar_bytes(venv / rel) for rel in rels) for dist, rels in files.items()}
    slots = assign_slots(sizes, groups)
    manifests: dict[str, Manifest] = {}
    for slot, dists in slots.items():
        (dest / slot / under).mkdir(parents=True, exist_ok=True)
        for dist in dists:
            for rel in files[dist]:
                _move(venv, dest / slot / under, rel)
        manifests[slot] = {
            "slot": slot,
            "bytes": sum(sizes[d] for d in dists),
            "distributions": {d: versions[d] for d in dists},
        }
    _remove_empty_dirs(venv)
    # What is left (interpreter links, pyvenv.cfg, pex's venv files) is the last venv layer.
    rest = [p for p in venv.rglob("*") if not p.is_dir() or p.is_symlink()]
    manifests[VENV_SLOT]["bytes"] = sum(p.lstat().st_size for p in rest)
    manifests[VENV_SLOT]["paths"] = sorted(str(p.relative_to(venv)) for p in rest)
    for rel in sorted(p.relative_to(venv) for p in rest):
        _move(venv, dest / VENV_SLOT / under, rel)
    _remove_empty_dirs(venv)
    for slot, manifest in manifests.items():
        if manifest["bytes"] > MAX_LAYER_BYTES:
            raise SystemExit(f"venv_layers: slot {slot} is {manifest['bytes'] / 1e9:.2f} GB")
        path = dest / slot / under / MANIFEST_DIR / f"{slot}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        for entry in (dest / slot, *(dest / slot).rglob("*")):
            os.utime(entry, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
    return manifests


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="venv_layers.py", description=__doc__.split("\n")[0])
    parser.add_argument("venv", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument(
        "--groups", required=True, help="layer groups in image order: NAME:SLOTS:PATTERN,... ..."
    )
    parser.add_argument(
        "--under",
        type=Path,
        default=Path(),
        help="put each slot's files under this relative path (the venv's, for layers copied to /)",
    )
    args = parser.parse_args(argv)
    manifests = split_into_slots(args.venv, args.dest, parse_groups(args.groups), args.under)
    for slot, manifest in manifests.items():
        names = manifest.get("distributions") or {}
        print(f"venv_layers: {slot:14} {manifest['bytes'] / 1e6:9.1f} MB  {len(names)} dists")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
