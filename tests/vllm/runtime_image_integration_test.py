"""docker/vllm:runtime on the real Docker engine, without a GPU: the real vLLM engine and Dynamo's
vLLM worker import and start their CLIs; the JIT toolchain (nvcc, CUDA headers, gcc, CPython
headers) is there; env, user, umask, banner and labels are right; Dynamo's frontend and mocker
answer a chat completion inside the image; the layers are laid out as the framework definition
says. Every container is removed, also on failure.
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

DOCKER_INFO = Path("docker.vllm/runtime.docker-info.json")
REPLY = "Hello from the vLLM image!"


@pytest.fixture(scope="module")
def image() -> str:
    return built_image(DOCKER_INFO)


def run(image: str, script: str, **kwargs) -> tuple[int, str, str]:
    ran = run_in_image(image, script, **kwargs)
    return ran.status, ran.out, ran.err


def test_vllm_and_the_dynamo_worker_import(image: str) -> None:
    status, out, err = run(
        image,
        "python -c 'import vllm, dynamo.vllm; print(vllm.__version__)'",
    )
    assert status == 0, err
    labels = docker.from_env().images.get(image).labels
    assert out.split()[-1] == labels["ai.dynamo.engine.version"] == "0.31.0"


def test_dynamo_vllm_help(image: str) -> None:
    """The worker's parser includes vLLM's engine arguments, whose defaults need a device: with
    no GPU, vLLM's own switch for CPU-only runs of an accelerator wheel selects its CPU platform."""
    status, out, err = run(image, "VLLM_TARGET_DEVICE=cpu python -m dynamo.vllm --help")
    assert status == 0, err[-3000:]
    assert "usage:" in out
    assert "--model" in out


def test_jit_toolchain_is_in_the_image(image: str) -> None:
    check_jit_toolchain(image, "13.0")


def test_env_user_banner_and_labels(image: str) -> None:
    check_runtime_identity(
        image,
        "vllm-runtime",
        "vllm",
        "13.0",
        "echo $CUDA_DEVICE_ORDER $VLLM_USE_FLASHINFER_SAMPLER $DYNAMO_ENGINE",
        ["PCI_BUS_ID", "1", "vllm"],
    )


def test_frontend_and_mocker_answer_inside_the_image(image: str, tmp_path: Path) -> None:
    check_frontend_and_mocker_answer(image, "vllm-it", tmp_path, REPLY)


def test_launcher_starts_the_vllm_worker(image: str, tmp_path: Path) -> None:
    check_launcher_starts_the_worker(image, "dynamo.vllm", tmp_path)


def test_layers_follow_the_framework_definition(image: str) -> None:
    check_layers_follow_the_definition(image, ["vllm"])
