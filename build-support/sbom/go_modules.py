"""The Go modules a Go binary is built from: every module its go.mod requires (the module graph
that Go 1.17+ records there in full), with the module hash go.sum pins for each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bootstrap.bootstrap import go_modules


class ModulesError(ValueError):
    pass


@dataclass(frozen=True)
class Module:
    path: str
    version: str
    h1: str  # go.sum's hash of the module's files (dirhash "h1:", base64 SHA-256)


def main_module(go_mod: Path) -> str:
    for line in go_mod.read_text().splitlines():
        if line.startswith("module "):
            return line.split()[1]
    raise ModulesError(f"{go_mod} names no module")


def read(go_mod: Path) -> list[Module]:
    """go.mod's requirements with their go.sum hashes (go.sum beside go.mod)."""
    go_sum = go_mod.with_name("go.sum")
    hashes = {}
    for line in go_sum.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and not parts[1].endswith("/go.mod"):
            hashes[(parts[0], parts[1])] = parts[2]
    out = []
    for module in go_modules(go_mod):
        path, _, version = module.partition("@")
        if (path, version) not in hashes:
            raise ModulesError(f"{go_sum} has no hash of {path} {version} (run go mod tidy)")
        out.append(Module(path, version, hashes[(path, version)]))
    return out
