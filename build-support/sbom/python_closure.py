"""The locked distributions an image installs: a requirement's closure in a Pants lockfile, as Pex
resolves it for the image's interpreter (pex 2.1.137, `LockedResolve.resolve`): markers evaluated
for that interpreter with the requesting extras, and per distribution the artifact whose wheel tags
rank best for it (an sdist only where no wheel fits)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap.bootstrap import read_lock
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version


class ClosureError(ValueError):
    pass


@dataclass(frozen=True)
class Interpreter:
    """The image's CPython (Debian's python3.11 in the base): what markers and wheel tags are
    evaluated for."""

    version: str  # e.g. "3.11.2"
    glibc: tuple[int, int]  # e.g. (2, 36)
    machine: str = "x86_64"

    def marker_environment(self) -> dict[str, str]:
        short = ".".join(self.version.split(".")[:2])
        return {
            "implementation_name": "cpython",
            "implementation_version": self.version,
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": self.version,
            "python_version": short,
            "sys_platform": "linux",
        }

    def platforms(self) -> list[str]:
        """manylinux tags from this glibc down, with their legacy aliases, as pip orders them."""
        major, minor = self.glibc
        out = []
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        for m in range(minor, 4, -1):
            out.append(f"manylinux_{major}_{m}_{self.machine}")
            if m in legacy:
                out.append(f"{legacy[m]}_{self.machine}")
        return [*out, f"linux_{self.machine}"]

    def tags(self) -> list[Tag]:
        """Supported wheel tags, most preferred first."""
        version = tuple(int(p) for p in self.version.split(".")[:2])
        interpreter = f"cp{version[0]}{version[1]}"
        platforms = self.platforms()
        return [
            *cpython_tags(version, abis=[interpreter], platforms=platforms),
            *compatible_tags(version, interpreter=interpreter, platforms=platforms),
        ]


@dataclass
class Distribution:
    name: str  # as the lock spells it (canonical)
    version: str
    url: str
    sha256: str
    requires: list[str] = field(default_factory=list)  # names of the distributions it pulls in


def _applies(requirement: Requirement, extras: set[str], environment: dict[str, str]) -> bool:
    if requirement.marker is None:
        return True
    return any(
        requirement.marker.evaluate({**environment, "extra": extra}) for extra in (extras or {""})
    )


def _best_artifact(artifacts: list[dict[str, Any]], ranks: dict[Tag, int]) -> dict[str, Any] | None:
    best: tuple[int, dict[str, Any]] | None = None
    sdist = None
    for artifact in artifacts:
        filename = artifact["url"].rsplit("/", 1)[-1]
        if not filename.endswith(".whl"):
            sdist = sdist or artifact
            continue
        tags = parse_wheel_filename(filename)[3]
        rank = min((ranks[t] for t in tags if t in ranks), default=None)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, artifact)
    return best[1] if best else sdist


def closure(lock: Path, names: list[str], interpreter: Interpreter) -> list[Distribution]:
    """The distributions that `names` (projects among the lock's input requirements, with the
    extras and versions the lock was generated with) pull in, sorted by name."""
    metadata, locked = read_lock(lock)
    inputs = {
        canonicalize_name(Requirement(r).name): Requirement(r)
        for r in metadata.get("generated_with_requirements", [])
    }
    by_name = {canonicalize_name(r["project_name"]): r for r in locked}
    environment = interpreter.marker_environment()
    ranks = {tag: i for i, tag in enumerate(interpreter.tags())}
    queue: deque[tuple[Requirement, set[str]]] = deque()
    for name in names:
        key = canonicalize_name(name)
        if key not in inputs:
            raise ClosureError(
                f"{name!r} is not a requirement of {lock}; its requirements:"
                f" {', '.join(sorted(inputs))}"
            )
        queue.append((inputs[key], set()))
    extras_of: dict[str, set[str]] = {}
    requires: dict[str, set[str]] = {}
    while queue:
        requirement, requesting_extras = queue.popleft()
        if not _applies(requirement, requesting_extras, environment):
            continue
        key = canonicalize_name(requirement.name)
        entry = by_name.get(key)
        if entry is None:
            raise ClosureError(f"{lock} locks no {requirement.name} (required as {requirement})")
        if not requirement.specifier.contains(entry["version"], prereleases=True):
            raise ClosureError(f"{lock} locks {key} {entry['version']}, outside {requirement}")
        extras = set(requirement.extras)
        if key in extras_of:
            if extras <= extras_of[key]:
                continue
            extras_of[key] |= extras
        else:
            extras_of[key] = extras
        for dependency in entry.get("requires_dists", []):
            child = Requirement(dependency)
            if _applies(child, extras_of[key], environment):
                requires.setdefault(key, set()).add(canonicalize_name(child.name))
                queue.append((child, extras_of[key]))
    out = []
    for name in sorted(extras_of):
        key = canonicalize_name(name)
        entry = by_name[key]
        python = entry.get("requires_python")
        if python and not SpecifierSet(python).contains(Version(interpreter.version)):
            raise ClosureError(f"{key} {entry['version']} requires Python {python}")
        artifact = _best_artifact(entry["artifacts"], ranks)
        if artifact is None or artifact.get("algorithm") != "sha256":
            raise ClosureError(f"{lock} has no artifact of {key} {entry['version']} for this image")
        out.append(
            Distribution(
                key,
                entry["version"],
                artifact["url"],
                artifact["hash"],
                sorted(requires.get(key, set()) & extras_of.keys()),
            )
        )
    return out


def interpreter_from(packages_lock: Path, python: str = "python3.11") -> Interpreter:
    """The base's CPython and glibc, from the Debian versions docker/base/packages.lock pins
    (e.g. `python3.11 3.11.2-6+deb12u6 amd64`, `libc6 2.36-9+deb12u13 amd64`)."""
    versions = {}
    for line in packages_lock.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            versions[parts[0]] = (parts[1], parts[2])
    try:
        python_version, arch = versions[python]
        glibc = versions["libc6"][0]
    except KeyError as missing:
        raise ClosureError(f"{packages_lock} pins no {missing.args[0]}") from None
    upstream = python_version.split(":")[-1].split("-")[0]
    major, minor = (int(p) for p in glibc.split(":")[-1].split("-")[0].split(".")[:2])
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    return Interpreter(upstream, (major, minor), machine)
