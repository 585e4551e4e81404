import zipfile
from pathlib import Path

from placeholder_wheels.make_placeholder_wheel import placeholder_wheel


def test_wheel_is_reproducible_and_declares_only_metadata(tmp_path: Path) -> None:
    first = placeholder_wheel("aisimulate", "0.13.0", tmp_path / "a", "offline")
    second = placeholder_wheel("aisimulate", "0.13.0", tmp_path / "b", "offline")
    assert first.name == "aisimulate-0.13.0-py3-none-any.whl"
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        names = sorted(zf.namelist())
        metadata = zf.read("aisimulate-0.13.0.dist-info/METADATA").decode()
    assert names == [
        "aisimulate-0.13.0.dist-info/METADATA",
        "aisimulate-0.13.0.dist-info/RECORD",
        "aisimulate-0.13.0.dist-info/WHEEL",
    ]
    assert "Name: aisimulate\nVersion: 0.13.0\n" in metadata
    assert "Requires-Dist" not in metadata
