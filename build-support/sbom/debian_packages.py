"""Debian packages an image holds, from the files that pin them: a section of
docker/base/packages.lock (`## runtime`, `## dev`) or the versions a Debian overlay installed (the
`/opt/dynamo/system-packages.lock` inside its tarball, docker/base/build-overlay.sh); each line
`package version arch`."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

# Where build-overlay.sh records what an overlay installed, inside the tarball.
OVERLAY_LOCK = "./opt/dynamo/system-packages.lock"


class PackagesError(ValueError):
    pass


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str


def parse(text: str, origin: str) -> list[Package]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise PackagesError(f"{origin}:{number}: expected 'package version arch', got {line!r}")
        out.append(Package(*parts))
    return out


def sections(text: str) -> dict[str, str]:
    """packages.lock's `## name` sections (a file without headers is one section, "")."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            out.setdefault(current, [])
        else:
            out.setdefault(current, []).append(line)
    return {name: "\n".join(lines) for name, lines in out.items()}


def read(path: Path, section: str = "") -> list[Package]:
    """The packages a lock file (or one `## section` of it) or an overlay tarball pins."""
    if path.name.endswith((".tar.gz", ".tar")):
        with tarfile.open(path) as tar:
            try:
                member = tar.extractfile(OVERLAY_LOCK)
            except KeyError:
                member = None
            if member is None:
                raise PackagesError(
                    f"{path} has no {OVERLAY_LOCK} (not a build-overlay.sh tarball)"
                )
            return parse(member.read().decode(), f"{path}:{OVERLAY_LOCK}")
    text = path.read_text()
    if section:
        found = sections(text)
        if section not in found:
            raise PackagesError(
                f"{path} has no section {section!r}; its sections: {', '.join(sorted(found))}"
            )
        text = found[section]
    return parse(text, str(path))
