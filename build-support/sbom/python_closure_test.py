"""closure(): the lock's distributions an image installs, as Pex picks them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from sbom.python_closure import ClosureError, Interpreter, closure, interpreter_from

ROOT = Path(__file__).resolve().parents[2]
DEBIAN = Interpreter("3.11.2", (2, 36))


def wheel(name: str, tag: str, digest: str) -> dict[str, str]:
    return {"algorithm": "sha256", "hash": digest, "url": f"https://files.example/{name}-{tag}.whl"}


def write_lock(tmp_path: Path, requirements: list[str], locked: list[dict]) -> Path:
    header = {"version": 3, "generated_with_requirements": requirements}
    lines = ["// --- BEGIN PANTS LOCKFILE METADATA: DO NOT EDIT OR REMOVE ---"]
    lines += [f"// {line}" for line in json.dumps(header, indent=2).splitlines()]
    lines += ["// --- END PANTS LOCKFILE METADATA ---"]
    body = {"locked_resolves": [{"locked_requirements": locked, "platform_tag": None}]}
    path = tmp_path / "test.lock"
    path.write_text("\n".join(lines) + "\n" + json.dumps(body))
    return path


def entry(
    name: str, version: str, artifacts: list[dict], requires: Sequence[str] = (), python: str = ""
) -> dict:
    return {
        "project_name": name,
        "version": version,
        "artifacts": artifacts,
        "requires_dists": list(requires),
        "requires_python": python or None,
    }


def test_markers_extras_and_the_best_wheel(tmp_path: Path) -> None:
    lock = write_lock(
        tmp_path,
        ["app[fast]==1.0", "unrelated==2"],
        [
            entry(
                "app",
                "1.0",
                [wheel("app-1.0", "py3-none-any", "a" * 64)],
                [
                    "dep>=1",
                    "fastlib; extra == 'fast'",
                    "slowlib; extra == 'slow'",
                    "oldpy; python_version < '3.11'",
                    "newpatch; python_full_version >= '3.11.3'",
                    "macstuff; sys_platform == 'darwin'",
                ],
            ),
            entry(
                "dep",
                "1.2",
                [
                    wheel("dep-1.2", "cp311-cp311-macosx_11_0_arm64", "1" * 64),
                    wheel(
                        "dep-1.2",
                        "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64",
                        "2" * 64,
                    ),
                    wheel("dep-1.2", "cp311-cp311-manylinux_2_28_x86_64", "3" * 64),
                    wheel("dep-1.2", "py3-none-any", "4" * 64),
                    wheel("dep-1.2", "cp311-cp311-manylinux_2_39_x86_64", "5" * 64),
                    {
                        "algorithm": "sha256",
                        "hash": "6" * 64,
                        "url": "https://files.example/dep-1.2.tar.gz",
                    },
                ],
            ),
            entry(
                "fastlib",
                "3",
                [{"algorithm": "sha256", "hash": "7" * 64, "url": "https://f/fastlib-3.tar.gz"}],
            ),
            *(
                entry(n, "1", [wheel(f"{n}-1", "py3-none-any", "8" * 64)])
                for n in ("slowlib", "oldpy", "newpatch", "macstuff", "unrelated")
            ),
        ],
    )
    found = {d.name: d for d in closure(lock, ["app"], DEBIAN)}
    # Debian's 3.11.2 on Linux: no Python < 3.11, no >= 3.11.3, no macOS; only the asked extra.
    assert sorted(found) == ["app", "dep", "fastlib"]
    # manylinux_2_28 ranks above 2_17 and the pure wheel; 2_39 needs a newer glibc than 2.36.
    assert found["dep"].sha256 == "3" * 64
    # No wheel at all: the sdist, which Pex builds.
    assert found["fastlib"].url.endswith("fastlib-3.tar.gz")
    assert found["app"].requires == ["dep", "fastlib"]


def test_a_name_that_is_no_input_requirement_is_refused(tmp_path: Path) -> None:
    lock = write_lock(
        tmp_path, ["app==1"], [entry("app", "1", [wheel("app-1", "py3-none-any", "a" * 64)])]
    )
    with pytest.raises(
        ClosureError, match="'nope' is not a requirement of .*; its requirements: app"
    ):
        closure(lock, ["nope"], DEBIAN)


def test_a_lock_that_misses_a_dependency_is_refused(tmp_path: Path) -> None:
    lock = write_lock(
        tmp_path,
        ["app==1"],
        [entry("app", "1", [wheel("app-1", "py3-none-any", "a" * 64)], ("gone",))],
    )
    with pytest.raises(ClosureError, match="locks no gone"):
        closure(lock, ["app"], DEBIAN)


def test_the_interpreter_is_the_base_images_python_and_glibc() -> None:
    interpreter = interpreter_from(ROOT / "docker/base/packages.lock")
    assert interpreter.version.startswith("3.11.")
    assert interpreter.glibc[0] == 2 and interpreter.machine == "x86_64"


def test_the_dynamo_image_closure_from_the_default_lock() -> None:
    """ai-dynamo's closure holds its runtime and none of the lock's tools (pytest, docker)."""
    interpreter = interpreter_from(ROOT / "docker/base/packages.lock")
    names = {
        d.name for d in closure(ROOT / "3rdparty/python/default.lock", ["ai-dynamo"], interpreter)
    }
    assert {"ai-dynamo", "ai-dynamo-runtime", "aiohttp"} <= names
    assert not names & {"pytest", "docker"}
    assert all(n == canonicalize_name(n) for n in names)
