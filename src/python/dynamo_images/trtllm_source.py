"""Where TensorRT-LLM comes from: upstream's install sources, defined once.

TensorRT-LLM has no PyPI route: every tensorrt-llm on PyPI is an sdist that downloads the real
wheel from NVIDIA's index at install time. The TRT-LLM images install what the `trtllm` resolve's
lock pins (ai-dynamo[trtllm], which pins tensorrt-llm exactly); the source says where that lock's
TensorRT-LLM wheel comes from (DYNAMO_TRTLLM_SOURCE):

  index          NVIDIA's package index (the default; DYNAMO_TRTLLM_INDEX_URL, default
                 https://pypi.nvidia.com/): the lock is generated from it and names its wheel there
  wheels         a local wheel directory (DYNAMO_TRTLLM_WHEEL_DIR, which also selects this): the
                 lock is generated from it and names the wheel as ${TRTLLM_WHEELS}/<file>
  release-image  NVIDIA's TRT-LLM release image as the base: refused (RELEASE_IMAGE_REFUSAL)

docker/trtllm:runtime and :dev are defined once the lock exists (./pants exports its digest and
docker/trtllm/BUILD reads it); until then docker/trtllm:pre-engine, the same image without the
engine, is what builds. Commands (standard library only: ./pants runs `preflight` before Pants):

  python3 src/python/dynamo_images/trtllm_source.py status   the selected source; what is missing
  python3 src/python/dynamo_images/trtllm_source.py lock     generate the lock from that source
  python3 src/python/dynamo_images/trtllm_source.py preflight GOAL/SPEC...
      (./pants) exit 2 with one line when the specs name the engine images and they cannot build
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[3]
RESOLVE = "trtllm"
ENGINE = "tensorrt-llm"
# The wheel's file names spell the project with an underscore.
WHEEL_PREFIX = "tensorrt_llm-"
IMAGE_DIR = "docker/trtllm"
ENGINE_TARGETS = ("runtime", "dev")
README = "docker/README.md, TensorRT-LLM"

SOURCE_VAR = "DYNAMO_TRTLLM_SOURCE"
INDEX_VAR = "DYNAMO_TRTLLM_INDEX_URL"
WHEEL_DIR_VAR = "DYNAMO_TRTLLM_WHEEL_DIR"
SOURCES = ("index", "wheels", "release-image")
DEFAULT_INDEX_URL = "https://pypi.nvidia.com/"
# The lock's name for the wheel directory (pants [python-repos].path_mappings, which ./pants sets
# from WHEEL_DIR_VAR): the lock stays the same on every machine, wherever the wheels are.
WHEELS_MAPPING = "TRTLLM_WHEELS"
RELEASE_IMAGE_REFUSAL = (
    f"{SOURCE_VAR}=release-image: not available: NVIDIA's TRT-LLM release images run Ubuntu's"
    " CPython 3.12, and every image here runs the Debian base's CPython {python} with Dynamo locked"
    f" for it; use {SOURCE_VAR}=wheels with a tensorrt_llm wheel built for it ({README})"
)


class SourceError(Exception):
    """One line: the bad value, the accepted ones, or what to provide."""


@dataclass(frozen=True)
class Source:
    mode: str
    index_url: str = ""
    wheel_dir: Path | None = None

    def describe(self) -> str:
        if self.mode == "index":
            return f"NVIDIA's index {self.index_url}"
        return f"the wheel directory {self.wheel_dir}"


def _pants_config(root: Path) -> dict:
    return tomllib.loads((root / "pants.toml").read_text())


def image_python(root: Path = REPO) -> str:
    """The images' CPython ('3.11'), from pants.toml's interpreter constraints."""
    config = _pants_config(root)
    constraint = config["python"]["interpreter_constraints"][0]
    match = re.fullmatch(r"CPython==(\d+)\.(\d+)\.\*", constraint)
    if not match:
        raise SourceError(f"pants.toml: interpreter constraint {constraint!r} names no one CPython")
    return f"{match[1]}.{match[2]}"


def lock_path(root: Path = REPO) -> Path:
    config = _pants_config(root)
    return root / config["python"]["resolves"][RESOLVE]


def pinned_version(root: Path = REPO) -> str:
    """The tensorrt-llm version ai-dynamo pins, from the default lock (which locks ai-dynamo)."""
    config = _pants_config(root)
    default = root / config["python"]["resolves"][config["python"]["default_resolve"]]
    for req in locked_requirements(default):
        if req["project_name"] == "ai-dynamo":
            for dist in req["requires_dists"]:
                match = re.match(rf"{ENGINE}==(\S+?);", dist.replace(" ", ""))
                if match:
                    return match[1]
    raise SourceError(f"{default}: ai-dynamo pins no {ENGINE}")


def locked_requirements(lock: Path) -> list[dict]:
    body = "\n".join(line for line in lock.read_text().splitlines() if not line.startswith("//"))
    return [
        r for resolve in json.loads(body)["locked_resolves"] for r in resolve["locked_requirements"]
    ]


def select(env: Mapping[str, str], root: Path = REPO) -> Source:
    """The one source the environment names, or a one-line SourceError, before any work."""
    wheel_dir = env.get(WHEEL_DIR_VAR, "")
    index_url = env.get(INDEX_VAR, "")
    mode = env.get(SOURCE_VAR, "") or ("wheels" if wheel_dir else "index")
    if mode not in SOURCES:
        raise SourceError(f"{SOURCE_VAR}={mode!r} is not accepted; accepted: {', '.join(SOURCES)}")
    if mode == "release-image":
        raise SourceError(RELEASE_IMAGE_REFUSAL.format(python=image_python(root)))
    if mode == "index":
        if wheel_dir:
            raise SourceError(
                f"{SOURCE_VAR}=index and {WHEEL_DIR_VAR}={wheel_dir!r} name two sources; set one"
            )
        url = index_url or DEFAULT_INDEX_URL
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SourceError(f"{INDEX_VAR}={url!r} is not an http(s) URL of a package index")
        return Source("index", index_url=url.rstrip("/") + "/")
    if index_url:
        raise SourceError(
            f"{SOURCE_VAR}=wheels and {INDEX_VAR}={index_url!r} name two sources; set one"
        )
    if not wheel_dir:
        raise SourceError(
            f"{SOURCE_VAR}=wheels needs {WHEEL_DIR_VAR}=<a directory with the {ENGINE} wheel>"
        )
    path = Path(wheel_dir)
    if not path.is_dir():
        raise SourceError(f"{WHEEL_DIR_VAR}={wheel_dir!r} is not a directory")
    return Source("wheels", wheel_dir=path.resolve())


def _installable(filename: str, python: str) -> bool:
    """Whether a wheel's tags admit CPython `python` ('3.11') on linux x86_64."""
    parts = filename[: -len(".whl")].split("-")
    if len(parts) < 5:
        return False
    py_tags, abi_tags, platforms = (p.split(".") for p in parts[-3:])
    major, minor = python.split(".")
    cpythons = [re.fullmatch(r"cp(\d)(\d+)", t) for t in py_tags]
    # cp310-abi3: any CPython from 3.10 on.
    abi3 = "abi3" in abi_tags and any(
        m and m[1] == major and int(m[2]) <= int(minor) for m in cpythons
    )
    python_ok = (
        bool({f"cp{major}{minor}", f"py{major}", f"py{major}{minor}"} & set(py_tags)) or abi3
    )
    platform_ok = any(p == "any" or p.endswith("x86_64") for p in platforms)
    return python_ok and platform_ok


def engine_wheel(source: Source, root: Path = REPO) -> Path:
    """The one tensorrt_llm wheel of a wheel directory that the images can install (wheels mode)."""
    assert source.wheel_dir is not None
    wheels = sorted(p.name for p in source.wheel_dir.glob("*.whl"))
    candidates = [w for w in wheels if w.startswith(WHEEL_PREFIX)]
    if not candidates:
        found = ", ".join(wheels) or "nothing"
        raise SourceError(
            f"no {WHEEL_PREFIX}*.whl in {WHEEL_DIR_VAR}={source.wheel_dir} (found: {found})"
        )
    python, version = image_python(root), pinned_version(root)
    right_version = [w for w in candidates if w.split("-")[1] == version]
    if not right_version:
        raise SourceError(
            f"{WHEEL_DIR_VAR}={source.wheel_dir} has {', '.join(candidates)}; ai-dynamo pins"
            f" {ENGINE}=={version}"
        )
    usable = [w for w in right_version if _installable(w, python)]
    if not usable:
        raise SourceError(
            f"{', '.join(right_version)}: not for CPython {python} on linux x86_64, which the"
            " images"
            f" run; NVIDIA builds {ENGINE} for other CPythons: build it from source for {python}"
        )
    if len(usable) > 1:
        raise SourceError(
            f"{WHEEL_DIR_VAR}={source.wheel_dir} has {len(usable)} candidates:"
            f" {', '.join(usable)}; keep one"
        )
    return source.wheel_dir / usable[0]


def check_lock(source: Source, root: Path = REPO) -> None:
    """That the lock exists, pins tensorrt-llm, and names its wheel where `source` has it."""
    lock = lock_path(root)
    if not lock.is_file():
        raise SourceError(
            f"{IMAGE_DIR}:runtime needs {lock.relative_to(root)}, generated from"
            f" {source.describe()}:"
            f" run `python3 src/python/dynamo_images/trtllm_source.py lock` where it is reachable"
            f" (or set {SOURCE_VAR}; {README})"
        )
    engine = [r for r in locked_requirements(lock) if r["project_name"] == ENGINE]
    if not engine:
        raise SourceError(f"{lock.relative_to(root)} pins no {ENGINE}; regenerate it ({README})")
    urls = [a["url"] for a in engine[0]["artifacts"]]
    from_wheels = [u for u in urls if u.startswith(f"file://${{{WHEELS_MAPPING}}}/")]
    if source.mode == "index":
        if from_wheels:
            raise SourceError(
                f"{lock.relative_to(root)} takes {ENGINE} from a wheel directory: set"
                f" {WHEEL_DIR_VAR}=<that directory>, or regenerate the lock from the index"
            )
        host = urlparse(source.index_url).netloc
        if not any(urlparse(u).netloc == host for u in urls):
            raise SourceError(
                f"{lock.relative_to(root)} takes {ENGINE} from {', '.join(urls)}, not from"
                f" {INDEX_VAR}={source.index_url}; regenerate the lock or set {INDEX_VAR}"
            )
        return
    if not from_wheels:
        raise SourceError(
            f"{lock.relative_to(root)} takes {ENGINE} from {', '.join(urls)}, not from a wheel"
            f" directory: unset {WHEEL_DIR_VAR}, or regenerate the lock from it"
        )
    wheel = engine_wheel(source, root)
    locked = {
        u.rsplit("/", 1)[-1]: a["hash"]
        for u, a in zip(urls, engine[0]["artifacts"], strict=True)
        if u in from_wheels
    }
    if wheel.name not in locked:
        raise SourceError(
            f"{lock.relative_to(root)} pins {', '.join(locked)}, not {wheel.name} of"
            f" {WHEEL_DIR_VAR};"
            " regenerate the lock"
        )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != locked[wheel.name]:
        raise SourceError(
            f"{wheel} has sha256 {digest}, the lock pins {locked[wheel.name]}: another build of the"
            " same version; regenerate the lock"
        )


def check_reachable(source: Source, timeout: float = 15) -> None:
    """That the index answers, before Pants spends minutes failing to lock from it."""
    try:
        urllib.request.urlopen(source.index_url, timeout=timeout).close()
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise SourceError(
            f"{INDEX_VAR}={source.index_url} does not answer from here ({reason}): generate the"
            f" lock where it does, or from a wheel directory ({WHEEL_DIR_VAR})"
        ) from None


def lock_command(source: Source) -> list[str]:
    """The ./pants command that generates the lock from `source`."""
    if source.mode == "index":
        repos = f"--python-repos-indexes=+['{source.index_url}']"
    else:
        # ./pants maps this directory to ${TRTLLM_WHEELS} in the lock (path_mappings).
        repos = f"--python-repos-find-links=+['file://{source.wheel_dir}']"
    return ["./pants", repos, "generate-lockfiles", f"--resolve={RESOLVE}"]


def path_mapping(env: Mapping[str, str]) -> str:
    """The [python-repos].path_mappings entry ./pants adds for a wheel directory ('' for none)."""
    wheel_dir = env.get(WHEEL_DIR_VAR, "")
    return f"{WHEELS_MAPPING}|{Path(wheel_dir).resolve()}" if wheel_dir else ""


RECURSIVE = ("::", "docker::", "docker/::", f"{IMAGE_DIR}::")
NAMED = (IMAGE_DIR, f"{IMAGE_DIR}:", *(f"{IMAGE_DIR}:{t}" for t in ENGINE_TARGETS))


def named_images(args: list[str]) -> tuple[bool, bool]:
    """(whether a spec names the engine images, whether a recursive spec covers them)."""
    specs = [a for a in args if not a.startswith("-")]
    return any(s in NAMED for s in specs), any(s in RECURSIVE for s in specs)


def preflight(args: list[str], env: Mapping[str, str], root: Path = REPO) -> str | None:
    """The one-line refusal for a Pants command line, or None. Named engine images must be able
    to build; a recursive spec covers them only once the lock defines them."""
    named, recursive = named_images(args)
    if not named and not (recursive and lock_path(root).is_file()):
        return None
    try:
        check_lock(select(env, root), root)
    except SourceError as e:
        return f"pants: {e}"
    return None


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("status", [])
    try:
        if command == "preflight":
            message = preflight(args, os.environ)
            if message:
                print(message, file=sys.stderr)
                return 2
            return 0
        if command == "path-mapping":
            print(path_mapping(os.environ))
            return 0
        source = select(os.environ)
        if command == "status":
            print(f"TensorRT-LLM source: {source.mode} ({source.describe()})")
            check_lock(source)
            print(f"{IMAGE_DIR}:runtime and :dev can build")
            return 0
        if command == "lock":
            if source.mode == "wheels":
                engine_wheel(source)
            else:
                check_reachable(source)
            cmd = lock_command(source)
            print("+ " + " ".join(cmd), file=sys.stderr)
            subprocess.run(cmd, cwd=REPO, check=True)
            check_lock(source)
            return 0
    except SourceError as e:
        print(f"trtllm_source: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        return e.returncode
    print(
        f"trtllm_source: unknown command {command!r};"
        " accepted: status, lock, preflight, path-mapping",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
