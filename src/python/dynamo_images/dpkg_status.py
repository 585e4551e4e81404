"""The dpkg database of an image that ADDs a Debian overlay onto an image with another overlay.

Each overlay (debian_overlay() in pants-plugins/macros.py) is made on the base's root filesystem
and carries that filesystem's whole /var/lib/dpkg/status, so ADDed onto an image that already
has another overlay's packages (vLLM's system packages under the dev overlay, the dev packages
under EFA's) it would replace the status that lists them. This prints the union: the image's
status, with the packages the overlay installed taken from the overlay's status. Those packages
are the overlay's own record (/opt/dynamo/system-packages.lock in it), or, for the base's dev
overlay, a section of the lock that records it (docker/base:installed-packages, `## dev`).

    python3 dpkg_status.py IMAGE_STATUS OVERLAY_TAR_GZ [LOCK#SECTION] > STATUS

Standard library only: it runs in the image build, on Debian's CPython.
"""

from __future__ import annotations

import sys
import tarfile

STATUS = "var/lib/dpkg/status"
INSTALLED = "opt/dynamo/system-packages.lock"


def stanzas(text: str) -> dict[tuple[str, str], str]:
    """dpkg status stanzas by (package, architecture)."""
    found = {}
    for block in text.split("\n\n"):
        block = block.strip("\n")
        if not block:
            continue
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != " "
        )
        found[(fields["Package"], fields.get("Architecture", ""))] = block
    return found


def installed(lock: str) -> set[tuple[str, str]]:
    """(package, architecture) of each `PACKAGE VERSION ARCH` line of a lock."""
    return {
        (line.split()[0], line.split()[2])
        for line in lock.splitlines()
        if line.strip() and not line.startswith("#")
    }


def section(lock: str, name: str) -> str:
    """The lines of a lock's `## NAME` section."""
    lines, inside, seen = [], False, False
    for line in lock.splitlines():
        if line.startswith("## "):
            inside = line[3:].strip() == name
            seen = seen or inside
        elif inside:
            lines.append(line)
    if not seen:
        raise ValueError(f"the lock has no section '## {name}'")
    return "\n".join(lines) + "\n"


def merge(image_status: str, overlay_status: str, overlay_lock: str) -> str:
    merged = stanzas(image_status)
    theirs = stanzas(overlay_status)
    for key in installed(overlay_lock):
        if key not in theirs:
            raise ValueError(f"the overlay installed {key[0]}:{key[1]} but its status lacks it")
        merged[key] = theirs[key]
    return "".join(merged[key] + "\n\n" for key in sorted(merged))


def read_overlay(path: str, own_record: bool = True) -> tuple[str, str]:
    """The overlay tarball's dpkg status and its record of the packages it installed ("" when
    not `own_record`)."""
    wanted = (STATUS, INSTALLED) if own_record else (STATUS,)
    texts: dict[str, str] = {INSTALLED: ""}
    with tarfile.open(path) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name in wanted:
                extracted = tar.extractfile(member)
                assert extracted is not None, name
                texts[name] = extracted.read().decode()
    missing = [name for name in wanted if not texts.get(name)]
    if missing:
        raise ValueError(f"{path} holds no {', '.join(missing)}: not a debian_overlay() tarball")
    return texts[STATUS], texts[INSTALLED]


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: dpkg_status.py IMAGE_STATUS OVERLAY_TAR_GZ [LOCK#SECTION]", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        image_status = f.read()
    try:
        status, record = read_overlay(argv[1], own_record=len(argv) == 2)
        if len(argv) == 3:
            lock, _, name = argv[2].partition("#")
            with open(lock) as f:
                record = section(f.read(), name)
        sys.stdout.write(merge(image_status, status, record))
    except ValueError as error:
        print(f"dpkg_status: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
