"""Split a virtualenv into per-layer trees by distribution, for separate Docker layers.

A deps PEX unpacks into one venv; Docker can only cache it as one layer. Moving the files of
some distributions (e.g. ai-dynamo and ai-dynamo-runtime, which change with every Dynamo release)
into a parallel tree lets the image COPY each tree as its own layer into the same venv path, so a
Dynamo upgrade does not resend the other third-party packages, and vice versa.

Run by the image build with the base image's python and nothing but the standard library:
    python3 venv_layers.py VENV DEST DIST [DIST ...]
moves every file that DIST's installed RECORD lists from VENV to the same relative path under DEST.
"""

from __future__ import annotations

import csv
import re
import shutil
import sys
from pathlib import Path


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def find_dist_info(site_packages: Path, dist: str) -> Path:
    matches = [
        p
        for p in site_packages.glob("*.dist-info")
        if normalize(p.name.split("-")[0]) == normalize(dist)
    ]
    if len(matches) != 1:
        found = sorted(p.name for p in site_packages.glob("*.dist-info"))
        raise SystemExit(
            f"venv_layers: expected one installed {dist!r} in {site_packages},"
            f" found {len(matches)} (have: {', '.join(found)})"
        )
    return matches[0]


def dist_files(site_packages: Path, dist: str) -> list[Path]:
    """Files (relative to site-packages, possibly ../../../bin/x) that the distribution owns."""
    dist_info = find_dist_info(site_packages, dist)
    with (dist_info / "RECORD").open(newline="") as f:
        listed = [Path(row[0]) for row in csv.reader(f) if row]
    return sorted(
        set(listed) | {p.relative_to(site_packages) for p in dist_info.rglob("*") if p.is_file()}
    )


def split(venv: Path, dest: Path, dists: list[str]) -> list[Path]:
    site_packages = next(venv.glob("lib/python*/site-packages"))
    moved: list[Path] = []
    for dist in dists:
        for rel in dist_files(site_packages, dist):
            source = (site_packages / rel).resolve()
            if not source.is_file():
                continue  # RECORD also lists .pyc files that were never compiled
            target = dest / source.relative_to(venv.resolve())
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), str(target))
            moved.append(target)
    # Leave no empty package folders behind in the source venv.
    for folder in sorted(
        (p for p in site_packages.rglob("*") if p.is_dir()),
        key=lambda p: len(p.parts),
        reverse=True,
    ):
        if not any(folder.iterdir()):
            folder.rmdir()
    return moved


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[-3], file=sys.stderr)
        return 2
    moved = split(Path(argv[0]), Path(argv[1]), argv[2:])
    print(f"venv_layers: moved {len(moved)} files of {', '.join(argv[2:])} to {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
