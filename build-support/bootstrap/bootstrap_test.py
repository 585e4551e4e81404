"""The entry points bootstrap.py writes into the Pants venv, run for real on a stand-in venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bootstrap.bootstrap import go_modules, install_entry_points

# What the stand-in pants_loader prints: the interpreter and the import path Pants would run with.
LOADER = """\
import json, sys

def main():
    print(json.dumps({"executable": sys.executable, "path": sys.path, "argv": sys.argv[1:]}))
    return 3
"""


def stand_in_venv(root: Path) -> tuple[Path, Path]:
    """A venv layout like the bootstrap's: bin/python3 links to a base interpreter, and
    site-packages holds pants with its native client and entry module."""
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python3").symlink_to(sys.executable)
    site_packages = venv / "lib" / "python3.9" / "site-packages"
    pants_bin = site_packages / "pants" / "bin"
    pants_bin.mkdir(parents=True)
    (site_packages / "pants" / "__init__.py").write_text("")
    (pants_bin / "__init__.py").write_text("")
    (pants_bin / "pants_loader.py").write_text(LOADER)
    native = pants_bin / "native_client"
    native.write_bytes(b"\x7fELF stand-in for the Rust client")
    native.chmod(0o644)  # the wheel ships it without its exec bit
    return venv, site_packages


def test_client_is_the_wheels_native_client_made_executable(tmp_path: Path) -> None:
    venv, site_packages = stand_in_venv(tmp_path)
    install_entry_points(venv)
    client = venv / "bin" / "pants-client"
    assert client.read_bytes() == (site_packages / "pants/bin/native_client").read_bytes()
    assert os.access(client, os.X_OK)


def test_server_runs_pants_on_the_base_interpreter_with_only_the_venvs_packages(
    tmp_path: Path,
) -> None:
    venv, site_packages = stand_in_venv(tmp_path)
    install_entry_points(venv)
    server = venv / "bin" / "pants-server"
    assert server.read_text().startswith(f"#!{Path(sys.executable).resolve()}\n")

    result = subprocess.run(
        [str(server), "package", "::"], capture_output=True, text=True, env={"PATH": "/usr/bin"}
    )
    assert result.returncode == 3, result.stderr  # main()'s exit code comes through
    seen = json.loads(result.stdout)
    assert Path(seen["executable"]).resolve() == Path(sys.executable).resolve()
    assert seen["argv"] == ["package", "::"]
    site_dirs = [p for p in seen["path"] if p.endswith("site-packages")]
    assert site_dirs == [str(site_packages)]


def test_rerunning_rewrites_the_entry_points(tmp_path: Path) -> None:
    venv, _ = stand_in_venv(tmp_path)
    install_entry_points(venv)
    (venv / "bin" / "pants-server").write_text("stale")
    install_entry_points(venv)
    assert "pants_loader" in (venv / "bin" / "pants-server").read_text()


def test_go_modules_lists_every_required_module(tmp_path: Path) -> None:
    go_mod = tmp_path / "go.mod"
    go_mod.write_text(
        "module example.local/m\n\ngo 1.21\n\nrequire example.com/single v1.0.0\n\n"
        "require (\n\tgithub.com/a/b v1.2.3\n\tgolang.org/x/sys v0.28.0 // indirect\n)\n"
    )
    assert go_modules(go_mod) == [
        "example.com/single@v1.0.0",
        "github.com/a/b@v1.2.3",
        "golang.org/x/sys@v0.28.0",
    ]
