"""The dev image's source tree (//:workspace) names every directory of the repo that has a BUILD
file, so that new code cannot silently go missing from /workspace."""

from __future__ import annotations

import ast
from pathlib import Path


def workspace_targets() -> list[str]:
    tree = ast.parse(Path("BUILD").read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and getattr(node.targets[0], "id", "") == "WORKSPACE_TARGETS"
            and isinstance(node.value, ast.List)
        ):
            return [ast.literal_eval(elt) for elt in node.value.elts]
    raise AssertionError("no WORKSPACE_TARGETS list in the root BUILD file")


def test_every_build_directory_is_in_the_workspace() -> None:
    build_dirs = {str(p.parent) for p in Path(".").rglob("BUILD") if not str(p).startswith("dist/")}
    # "dir:name", "dir" or "dir@resolve=..." (a parametrized target's one instance).
    named = {t.split(":")[0].split("@")[0] or "." for t in workspace_targets()}
    # Directories whose only targets are images or packages built from code named elsewhere.
    packaging_only = {
        "docker/docs",
        "docker/dynamo",
        "docker/epp",
        "docker/sglang",
        "docker/trtllm",
        "docker/vllm",
    }
    assert sorted(build_dirs - named - packaging_only) == []
    assert sorted(named - build_dirs) == []
