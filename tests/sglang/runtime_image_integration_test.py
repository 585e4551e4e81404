"""docker/sglang:runtime on the real Docker engine, without a GPU: the real SGLang engine and
Dynamo's SGLang worker import and start their CLIs; the JIT toolchain is there; env (upstream's
SGLANG_FORCE_SHUTDOWN), /sgl-workspace/dynamo, user, umask, banner and labels are right; Dynamo's
frontend and mocker answer a chat completion inside the image; the layers are laid out as the
framework definition says. Every container is removed, also on failure.
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest
from built_images import built_image
from containers import run_in_image
from engine_image_checks import (
    check_frontend_and_mocker_answer,
    check_jit_toolchain,
    check_launcher_starts_the_worker,
    check_layers_follow_the_definition,
    check_runtime_identity,
)

DOCKER_INFO = Path("docker.sglang/runtime.docker-info.json")
REPLY = "Hello from the SGLang image!"


@pytest.fixture(scope="module")
def image() -> str:
    return built_image(DOCKER_INFO)


def test_sglang_and_the_dynamo_worker_import(image: str) -> None:
    ran = run_in_image(image, "python -c 'import sglang, dynamo.sglang; print(sglang.__version__)'")
    assert ran.status == 0, ran.err[-3000:]
    labels = docker.from_env().images.get(image).labels
    assert ran.out.split()[-1] == labels["ai.dynamo.engine.version"] == "0.5.21"


def test_the_cuda_tile_stand_in_costs_only_flashinfers_cutile_kernels(image: str) -> None:
    """cuda-tile 1.6.0rc5 is a metadata-only placeholder (docker/README.md): FlashInfer's GEMM
    module imports and registers none of its cuTile kernels."""
    ran = run_in_image(
        image, "python -c 'import flashinfer.gemm as g; print(*g._cuda_tile_kernels)'"
    )
    assert ran.status == 0, ran.err[-3000:]
    assert ran.out.split() == ["is_cuda_tile_available"]


def test_dynamo_sglang_help(image: str) -> None:
    ran = run_in_image(image, "python -m dynamo.sglang --help")
    assert ran.status == 0, ran.err[-3000:]
    assert "usage:" in ran.out
    assert "--model-path" in ran.out


def test_jit_toolchain_is_in_the_image(image: str) -> None:
    check_jit_toolchain(image, "13.0")


def test_env_user_workspace_banner_and_labels(image: str) -> None:
    labels = check_runtime_identity(
        image,
        "sglang-runtime",
        "sglang",
        "13.0",
        "echo $SGLANG_FORCE_SHUTDOWN $DYNAMO_ENGINE; readlink /sgl-workspace/dynamo",
        ["1", "sglang", "/workspace"],
    )
    assert labels["ai.dynamo.engine"] == "sglang"


def test_frontend_and_mocker_answer_inside_the_image(image: str, tmp_path: Path) -> None:
    check_frontend_and_mocker_answer(image, "sglang-it", tmp_path, REPLY)


def test_launcher_starts_the_sglang_worker(image: str, tmp_path: Path) -> None:
    check_launcher_starts_the_worker(image, "dynamo.sglang", tmp_path)


def test_layers_follow_the_framework_definition(image: str) -> None:
    check_layers_follow_the_definition(image, ["sglang", "sglang-kernel"])
