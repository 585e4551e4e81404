import base64
import hashlib
from pathlib import Path

import pytest

from dynamo_images.venv_layers import split


def install(site: Path, dist: str, files: dict[str, bytes]) -> None:
    """Lay out an installed distribution the way pip/pex do, with a RECORD."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    rows = []
    for rel, data in {**files, f"{info.name}/METADATA": b"Name: " + dist.encode()}.items():
        path = (site / rel).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{rel},sha256={digest},{len(data)}")
    rows.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")


def test_moves_only_the_named_distributions(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    site = venv / "lib/python3.11/site-packages"
    install(
        site, "ai-dynamo", {"dynamo/frontend/__init__.py": b"x", "../../../bin/dynamo-run": b"#!"}
    )
    install(site, "requests", {"requests/__init__.py": b"y"})
    moved = split(venv, tmp_path / "layer", ["ai_dynamo"])

    layer = tmp_path / "layer"
    assert (layer / "lib/python3.11/site-packages/dynamo/frontend/__init__.py").read_bytes() == b"x"
    assert (layer / "bin/dynamo-run").exists()
    assert (layer / "lib/python3.11/site-packages/ai_dynamo-1.0.dist-info/RECORD").exists()
    assert not (site / "dynamo").exists(), "emptied package folders are removed"
    assert (site / "requests/__init__.py").exists()
    assert len(moved) == 4


def test_unknown_distribution_is_an_error(tmp_path: Path) -> None:
    site = tmp_path / "venv/lib/python3.11/site-packages"
    install(site, "requests", {"requests/__init__.py": b"y"})
    with pytest.raises(
        SystemExit, match="expected one installed 'ai-dynamo'.*have: requests-1.0.dist-info"
    ):
        split(tmp_path / "venv", tmp_path / "layer", ["ai-dynamo"])
