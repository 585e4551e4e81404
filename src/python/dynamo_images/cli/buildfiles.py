"""What docker/*/BUILD defines, read from the files themselves (the CLI never keeps its own list):
which frameworks have images, which image targets exist, and each framework's knob facts
(accepted CUDA versions, why KVBM is refused), as framework_image() in pants-plugins/macros.py
takes them.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

# The docker_image targets framework_image() defines (tests check this against the macro), and
# the one it adds with `pre_engine=` (the image without its engine, for an engine with no source).
FRAMEWORK_IMAGE_TARGETS = ("runtime", "dev", "runtime-aws", "dev-aws", "local-dev")
PRE_ENGINE_TARGET = "pre-engine"
MACRO = "framework_image"
_EMPTY = ast.Tuple(elts=[], ctx=ast.Load())  # `()`


@dataclass(frozen=True)
class Framework:
    name: str
    image_dir: str  # docker/<image_dir>
    targets: tuple[str, ...]
    cuda_versions: tuple[str, ...]  # empty: the image has no CUDA libraries
    cuda_why: str
    kvbm_refusal: str


def _literal(node: ast.expr, default: object) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return default


def _strings(node: ast.expr) -> tuple[str, ...]:
    value = _literal(node, ())
    return tuple(str(v) for v in value) if isinstance(value, tuple | list) else ()


def _calls(tree: ast.Module, name: str) -> list[dict[str, ast.expr]]:
    return [
        {kw.arg: kw.value for kw in node.value.keywords if kw.arg}
        for node in tree.body
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", None) == name
    ]


def lock_exists(call: dict[str, ast.expr], repo_root: Path) -> bool:
    """Whether the lock of the call's resolve exists (pants.toml [python.resolves])."""
    resolve = str(_literal(call.get("resolve", ast.Constant("")), ""))
    try:
        resolves = tomllib.loads((repo_root / "pants.toml").read_text())["python"]["resolves"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return False
    return resolve in resolves and (repo_root / resolves[resolve]).is_file()


def _macro_targets(call: dict[str, ast.expr], repo_root: Path) -> tuple[str, ...]:
    # framework_image(engine_lock=...) defines the engine images once the resolve's lock exists.
    engine = "engine_lock" not in call or lock_exists(call, repo_root)
    return (FRAMEWORK_IMAGE_TARGETS if engine else ()) + (
        (PRE_ENGINE_TARGET,) if "pre_engine" in call else ()
    )


def docker_image_targets(repo_root: Path) -> dict[str, tuple[str, ...]]:
    """docker/<dir> -> names of the docker_image targets its BUILD defines (directly or through
    framework_image)."""
    out: dict[str, tuple[str, ...]] = {}
    for build in sorted((repo_root / "docker").glob("*/BUILD")):
        tree = ast.parse(build.read_text(), str(build))
        names = [str(_literal(c["name"], "")) for c in _calls(tree, "docker_image") if "name" in c]
        for call in _calls(tree, MACRO):
            names += _macro_targets(call, repo_root)
        if names:
            out[build.parent.name] = tuple(names)
    return out


def frameworks(repo_root: Path) -> dict[str, Framework]:
    """Framework name -> its facts, for every docker/*/BUILD that calls framework_image()."""
    out = {}
    for build in sorted((repo_root / "docker").glob("*/BUILD")):
        tree = ast.parse(build.read_text(), str(build))
        for call in _calls(tree, MACRO):
            name = str(_literal(call["framework"], ""))
            out[name] = Framework(
                name=name,
                image_dir=build.parent.name,
                targets=_macro_targets(call, repo_root),
                cuda_versions=_strings(call.get("cuda_versions", _EMPTY)),
                cuda_why=str(_literal(call.get("cuda_why", ast.Constant("")), "")),
                kvbm_refusal=str(_literal(call.get("kvbm_refusal", ast.Constant("")), "")),
            )
    return out
