"""Refuse a cold engine-image build that the disk cannot hold, before any work starts.

Run by ./pants for goals that build images, with the goals and specs it was given:
    python3 disk_check.py ARG...
A build of an engine image that is not in the local Docker engine yet needs room for its wheels
in the Pex and Pants caches under HOME and for its build context, builder stage and layers in
Docker's storage; when a filesystem has less free than that, this prints one line with the
space needed and exits 1. Standard library only (it runs before Pants exists).
DYNAMO_SKIP_DISK_CHECK=1 skips it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

GB = 1_000_000_000


@dataclass(frozen=True)
class Need:
    caches: int  # bytes under HOME: ~/.pex (downloads, installed wheels, wheel zips), Pants' store
    docker: int  # bytes in Docker's storage: build context, builder stage, image layers


# The caches a cold build fills; what they already hold is not needed again.
CACHE_DIRS = (".pex", ".cache/pants")


# A cold build of each engine's runtime image, with a margin (docker/README.md, "Disk", has the
# measured figures and the command that measures them). Frameworks not listed need little.
COLD_NEEDS = {
    "vllm": Need(caches=30 * GB, docker=26 * GB),
    # Its wheels overlap vLLM's (the shared layers) in the caches, not in the builder stage.
    "sglang": Need(caches=30 * GB, docker=26 * GB),
}
RECURSIVE = ("::", "docker::", "tests::", "docker/::")
# Tests that build every engine's images (their shared layers).
CROSS_ENGINE_TESTS = "tests/engines"


def frameworks_in(args: list[str]) -> set[str]:
    """Engine frameworks whose images the specs among `args` may build."""
    found: set[str] = set()
    for arg in args:
        if arg.startswith("-"):
            continue
        if arg in RECURSIVE or arg.startswith(CROSS_ENGINE_TESTS):
            return set(COLD_NEEDS)
        for framework in COLD_NEEDS:
            if arg.startswith((f"docker/{framework}", f"tests/{framework}")):
                found.add(framework)
    return found


def image_exists(framework: str) -> bool:
    try:
        result = subprocess.run(
            ["docker", "image", "inspect", f"dynamo:latest-{framework}-runtime"],
            capture_output=True,
        )
    except OSError:
        return False
    return result.returncode == 0


def docker_root() -> Path:
    try:
        out = subprocess.run(
            ["docker", "info", "--format", "{{.DockerRootDir}}"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        out = ""
    return Path(out or "/var/lib/docker")


def existing_parent(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def shortfall(needs: dict[Path, int]) -> list[tuple[Path, int, int]]:
    """(mount point, bytes needed, bytes free) for each filesystem that lacks room; `needs` maps
    paths to bytes, and paths on the same filesystem add up."""
    by_device: dict[int, tuple[Path, int]] = {}
    for path, size in needs.items():
        path = existing_parent(path)
        device = os.stat(path).st_dev
        previous = by_device.get(device, (path, 0))
        by_device[device] = (previous[0], previous[1] + size)
    out = []
    for path, size in by_device.values():
        free = shutil.disk_usage(path).free
        if free < size:
            out.append((path, size, free))
    return out


def tree_bytes(path: Path) -> int:
    """Bytes of the files under `path` (du -s; 0 when it does not exist)."""
    if not path.exists():
        return 0
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out else 0


def check(args: list[str], home: Path) -> str | None:
    """The one-line refusal, or None when the disk can hold the build."""
    cold = sorted(f for f in frameworks_in(args) if not image_exists(f))
    if not cold:
        return None
    cached = sum(tree_bytes(home / d) for d in CACHE_DIRS)
    caches = max(0, sum(COLD_NEEDS[f].caches for f in cold) - cached)
    root = docker_root()
    needs = {home: caches}
    needs[root] = needs.get(root, 0) + sum(COLD_NEEDS[f].docker for f in cold)
    short = shortfall(needs)
    if not short:
        return None
    where = "; ".join(
        f"{p}: {need / GB:.0f} GB needed, {free / GB:.0f} GB free" for p, need, free in short
    )
    return (
        f"pants: not enough disk for a cold build of {', '.join(f'docker/{f}' for f in cold)}"
        f" ({where}); free some (../shared/tools/disk-report, docker builder prune) or set"
        " DYNAMO_SKIP_DISK_CHECK=1"
    )


def main(argv: list[str]) -> int:
    if os.environ.get("DYNAMO_SKIP_DISK_CHECK"):
        return 0
    message = check(argv, Path.home())
    if message:
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
