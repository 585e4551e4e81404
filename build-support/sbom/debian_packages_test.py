"""Reading the Debian package pins: lock sections and overlay tarballs."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from sbom.debian_packages import OVERLAY_LOCK, Package, PackagesError, read

ROOT = Path(__file__).resolve().parents[2]


def test_sections_of_the_base_lock() -> None:
    runtime = read(ROOT / "docker/base/packages.lock", "runtime")
    dev = read(ROOT / "docker/base/packages.lock", "dev")
    assert any(p.name.startswith("python3.11") for p in runtime)
    assert runtime and dev and not {p.name for p in runtime} & {p.name for p in dev}
    with pytest.raises(PackagesError, match="has no section 'gpu'; its sections: dev, runtime"):
        read(ROOT / "docker/base/packages.lock", "gpu")


def test_an_overlay_tarball_records_what_it_installed(tmp_path: Path) -> None:
    out = tmp_path / "overlay.tar.gz"
    data = b"lighttpd 1.4.69-1 amd64\nlibfoo1 2.0-3 amd64\n"
    with tarfile.open(out, "w:gz") as tar:
        info = tarfile.TarInfo(OVERLAY_LOCK)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert read(out) == [
        Package("lighttpd", "1.4.69-1", "amd64"),
        Package("libfoo1", "2.0-3", "amd64"),
    ]


def test_a_bad_line_is_named(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.write_text("ok 1 amd64\nbroken line\n")
    with pytest.raises(
        PackagesError, match=r"x.lock:2: expected 'package version arch', got 'broken line'"
    ):
        read(lock)
