"""The CLI names only images, targets and knobs that docker/*/BUILD (and the BUILD prelude they
call) really define and read. Runs at the root of a copy of the repository (//:project-files)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from dynamo_images.cli import build, buildfiles, images

PRELUDE = Path("pants-plugins/macros.py")


def build_file_sources() -> str:
    return "\n".join(p.read_text() for p in [PRELUDE, *Path("docker").glob("*/BUILD")])


def test_every_knob_variable_is_read_by_a_build_file() -> None:
    read = set(re.findall(r"""\benv\(\s*["']([A-Z0-9_]+)["']""", build_file_sources()))
    for knob in build.BUILD_KNOBS:
        assert knob.env_var in read, f"{knob.flag} sets {knob.env_var}, which no BUILD file reads"


def test_the_default_build_names_a_defined_target() -> None:
    image = images.build_image(images.DEFAULT_FRAMEWORK, images.DEFAULT_TARGET, efa=False)
    defined = buildfiles.docker_image_targets(Path("."))
    assert image.target in defined[image.image_dir], image.pants_address


def test_the_frontend_target_is_defined() -> None:
    image = images.build_image("dynamo", images.FRONTEND_TARGET, efa=False)
    assert image.target in buildfiles.docker_image_targets(Path("."))[image.image_dir]


def test_framework_image_defines_the_targets_the_cli_expects() -> None:
    """framework_image() names its images as the first argument of _image(NAME, ...) and
    _runtime_image(NAME, ...), and of _efa_image(NAME, ...) for NAME-aws."""
    tree = ast.parse(PRELUDE.read_text())
    (macro,) = (
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == buildfiles.MACRO
    )
    suffix = {"_image": "", "_runtime_image": "", "_efa_image": "-aws"}
    names = [
        f"{node.args[0].value!s}{suffix[node.func.id]}"
        for node in ast.walk(macro)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in suffix
        and isinstance(node.args[0], ast.Constant)
    ]
    assert sorted(names) == sorted(
        (*buildfiles.FRAMEWORK_IMAGE_TARGETS, buildfiles.PRE_ENGINE_TARGET)
    )


def test_trtllm_defines_its_engine_images_once_its_lock_exists() -> None:
    defined = buildfiles.docker_image_targets(Path("."))
    locked = Path("3rdparty/python/trtllm.lock").is_file()
    engine = buildfiles.FRAMEWORK_IMAGE_TARGETS if locked else ()
    assert defined["trtllm"] == (*engine, "pre-engine")
    assert defined["vllm"] == buildfiles.FRAMEWORK_IMAGE_TARGETS


def test_every_defined_framework_is_one_the_cli_knows() -> None:
    found = buildfiles.frameworks(Path("."))
    assert set(found) <= set(images.FRAMEWORKS)
    assert {"dynamo", "vllm"} <= set(found)
    for name, framework in found.items():
        assert framework.image_dir == name


def test_vllm_knob_facts_come_from_its_build_file() -> None:
    vllm = buildfiles.frameworks(Path("."))["vllm"]
    assert vllm.cuda_versions == ("13.0",)
    assert "torch 2.13.0" in vllm.cuda_why
    assert "nixl" in vllm.kvbm_refusal
    assert buildfiles.frameworks(Path("."))["dynamo"].cuda_versions == ()
