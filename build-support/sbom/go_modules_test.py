"""The EPP's Go modules, with go.sum's hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
from bootstrap.bootstrap import go_modules

from sbom.go_modules import ModulesError, main_module, read

GO_MOD = Path(__file__).resolve().parents[2] / "src/go/epp/go.mod"


def test_every_required_module_has_its_hash() -> None:
    modules = read(GO_MOD)
    assert [f"{m.path}@{m.version}" for m in modules] == go_modules(GO_MOD)
    assert all(m.h1.startswith("h1:") for m in modules)
    assert main_module(GO_MOD) == "dynamo-images.local/epp"


def test_a_module_without_a_hash_is_refused(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module x\n\nrequire example.com/a v1.0.0\n")
    (tmp_path / "go.sum").write_text("example.com/a v1.0.0/go.mod h1:abc=\n")
    with pytest.raises(ModulesError, match="no hash of example.com/a v1.0.0"):
        read(tmp_path / "go.mod")
