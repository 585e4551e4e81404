"""docker/trtllm:pre-engine on the real Docker engine, without a GPU: the TensorRT-LLM image up to
its engine wheel. Open MPI starts ranks as the image's user with upstream's
OMPI_MCA_coll_ucc_enable=0; user, umask, banner and labels are right; Dynamo's TRT-LLM worker is
there and misses only the engine; Dynamo's frontend and mocker answer inside it. Every container
is removed, also on failure.
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest
from built_images import built_image
from containers import run_in_image
from engine_image_checks import check_frontend_and_mocker_answer, check_runtime_identity

from dynamo_images.cli.layers import layer_report

DOCKER_INFO = Path("docker.trtllm/pre-engine.docker-info.json")
REPLY = "Hello from the TensorRT-LLM image!"


@pytest.fixture(scope="module")
def image() -> str:
    return built_image(DOCKER_INFO)


def test_open_mpi_starts_ranks_as_the_image_user(image: str) -> None:
    ran = run_in_image(
        image,
        "mpirun --version | head -n 1;"
        " mpirun -n 2 --oversubscribe sh -c 'echo rank=$OMPI_COMM_WORLD_RANK uid=$(id -u)'"
        " | sort",
    )
    assert ran.status == 0, ran.out + ran.err
    lines = ran.out.splitlines()
    assert lines[0].startswith("mpirun (Open MPI) 4.")
    assert lines[-2:] == ["rank=0 uid=1000", "rank=1 uid=1000"]


def test_the_mpi_library_tensorrt_llm_loads_is_there(image: str) -> None:
    """mpi4py (a tensorrt-llm dependency) loads Open MPI's libmpi at run time."""
    ran = run_in_image(image, "ldconfig -p | grep -o 'libmpi.so.40 '")
    assert ran.status == 0, ran.err
    assert ran.out.split() == ["libmpi.so.40"]


def test_env_user_banner_and_labels(image: str) -> None:
    # No CUDA libraries until the engine's closure is in; Dynamo from the default resolve.
    labels = check_runtime_identity(
        image,
        "trtllm-pre-engine",
        "python-default",
        "none",
        "echo $OMPI_MCA_coll_ucc_enable $DYNAMO_ENGINE",
        ["0", "mocker"],
    )
    assert labels["ai.dynamo.engine"] == "mocker"
    assert labels["org.opencontainers.image.title"] == "trtllm-pre-engine"


def test_dynamos_trtllm_worker_misses_only_the_engine(image: str) -> None:
    ran = run_in_image(image, "python -c 'import dynamo.trtllm.main'")
    assert ran.status != 0
    assert "No module named 'tensorrt_llm'" in ran.err, ran.err[-3000:]


def test_frontend_and_mocker_answer_inside_the_image(image: str, tmp_path: Path) -> None:
    check_frontend_and_mocker_answer(image, "trtllm-pre-engine-it", tmp_path, REPLY)


def test_open_mpi_comes_before_dynamos_layers(image: str) -> None:
    """The Debian overlay sits under Dynamo's slot, so a Dynamo bump leaves it alone; our code is
    the last small layer before the SBOM."""
    report = layer_report(docker.from_env(), image)
    slots = [layer.slot for layer in report.layers]
    overlay = next(
        i for i, layer in enumerate(report.layers) if "system-overlay.tar.gz" in layer.instruction
    )
    assert overlay < slots.index("dynamo") < slots.index("venv")
    assert report.layers[-2].instruction == "COPY /files/code/ /"
