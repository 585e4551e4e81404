from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from dynamo_images.dpkg_status import main, merge, read_overlay, section, stanzas


def stanza(package: str, version: str, arch: str = "amd64") -> str:
    return (
        f"Package: {package}\nStatus: install ok installed\nArchitecture: {arch}\n"
        f"Version: {version}\nDescription: {package}\n two lines"
    )


BASE = [stanza("bash", "5.2.15-2+b13"), stanza("libc6", "2.36-9+deb12u10")]
# The image: the base plus an earlier overlay's gcc and its upgrade of libc6.
IMAGE = (
    "\n\n".join(
        [
            stanza("bash", "5.2.15-2+b13"),
            stanza("gcc-12", "12.2.0-14"),
            stanza("libc6", "2.36-9+deb12u13"),
        ]
    )
    + "\n\n"
)
# The overlay, made on the base: git, and the base's own libc6.
OVERLAY = "\n\n".join([*BASE, stanza("git", "1:2.39.5-0+deb12u3")]) + "\n\n"
OVERLAY_LOCK = "git 1:2.39.5-0+deb12u3 amd64\n"


def versions(status: str) -> dict[str, str]:
    return {
        package: block.split("Version: ")[1].split("\n")[0]
        for (package, _), block in stanzas(status).items()
    }


def test_the_union_keeps_the_earlier_overlays_packages_and_adds_the_new_ones() -> None:
    assert versions(merge(IMAGE, OVERLAY, OVERLAY_LOCK)) == {
        "bash": "5.2.15-2+b13",
        "gcc-12": "12.2.0-14",
        # Not installed by this overlay: the image's (upgraded) version stays.
        "libc6": "2.36-9+deb12u13",
        "git": "1:2.39.5-0+deb12u3",
    }


def test_stanzas_are_kept_whole_and_separated_as_dpkg_writes_them() -> None:
    merged = merge(IMAGE, OVERLAY, OVERLAY_LOCK)
    assert merged.endswith("two lines\n\n") and "\n\n\n" not in merged
    assert stanza("git", "1:2.39.5-0+deb12u3") + "\n\n" in merged


def test_a_package_the_overlay_claims_but_lacks_is_an_error() -> None:
    with pytest.raises(ValueError, match="installed curl:amd64 but its status lacks it"):
        merge(IMAGE, OVERLAY, OVERLAY_LOCK + "curl 7.88.1-10+deb12u15 amd64\n")


def write_overlay(path: Path, members: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_the_overlay_tarball_is_read_and_the_merge_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overlay = tmp_path / "overlay.tar.gz"
    write_overlay(
        overlay,
        {
            "./usr/bin/git": "",
            "./var/lib/dpkg/status": OVERLAY,
            "./opt/dynamo/system-packages.lock": OVERLAY_LOCK,
        },
    )
    assert read_overlay(str(overlay)) == (OVERLAY, OVERLAY_LOCK)
    (tmp_path / "status").write_text(IMAGE)
    assert main([str(tmp_path / "status"), str(overlay)]) == 0
    assert capsys.readouterr().out == merge(IMAGE, OVERLAY, OVERLAY_LOCK)


def test_a_tarball_that_is_no_overlay_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.tar.gz"
    write_overlay(other, {"./var/lib/dpkg/status": OVERLAY})
    (tmp_path / "status").write_text(IMAGE)
    assert main([str(tmp_path / "status"), str(other)]) == 1
    assert capsys.readouterr().err == (
        f"dpkg_status: {other} holds no opt/dynamo/system-packages.lock:"
        " not a debian_overlay() tarball\n"
    )


def test_the_dev_overlays_packages_come_from_a_section_of_the_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overlay = tmp_path / "dev-overlay.tar.gz"
    write_overlay(overlay, {"./var/lib/dpkg/status": OVERLAY})
    lock = tmp_path / "installed-packages.lock"
    lock.write_text("## runtime\nbash 5.2.15-2+b13 amd64\n## dev\n" + OVERLAY_LOCK)
    (tmp_path / "status").write_text(IMAGE)
    assert main([str(tmp_path / "status"), str(overlay), f"{lock}#dev"]) == 0
    assert capsys.readouterr().out == merge(IMAGE, OVERLAY, OVERLAY_LOCK)
    assert main([str(tmp_path / "status"), str(overlay), f"{lock}#docs"]) == 1
    assert capsys.readouterr().err == "dpkg_status: the lock has no section '## docs'\n"


def test_a_section_ends_at_the_next_one() -> None:
    assert section("## runtime\na 1 all\n## dev\nb 2 amd64\n", "runtime") == "a 1 all\n"
