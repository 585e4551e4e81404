"""docker/vllm:runtime on the real Docker engine, without a GPU: the real vLLM engine and Dynamo's
vLLM worker import and start their CLIs; the JIT toolchain (nvcc, CUDA headers, gcc, CPython
headers) is there; env, user, umask, banner and labels are right; Dynamo's frontend and mocker
answer a chat completion inside the image; the layers are laid out as the framework definition
says. Every container is removed, also on failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
from built_images import built_image
from containers import run_in_image
from dynamo_deployment import MODEL_MOUNT, replay_chat_request, replaying_deployment, tiny_model

from dynamo_images.cli.layers import layer_report

DOCKER_INFO = Path("docker.vllm/runtime.docker-info.json")
MODEL_NAME = "tiny-mocker"
REPLY = "Hello from the vLLM image!"
MAX_LAYER_BYTES = 1_500_000_000


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
    """What vLLM, Triton and FlashInfer compile with on a GPU host."""
    script = """
    set -e
    nvcc --version | tail -n 2
    test -f "$CPATH/cuda_runtime.h" && echo cuda-headers-ok
    test -f "$CUDA_HOME/bin/nvcc" && echo cuda-home-ok
    "$TRITON_PTXAS_PATH" --version | head -n 1
    cc --version | head -n 1
    test -f /usr/include/python3.11/Python.h && echo python-headers-ok
    printf '#include <cuda_runtime.h>\\n#include <Python.h>\\n' > /tmp/t.c
    echo 'int main(void){return 0;}' >> /tmp/t.c
    cc -I/usr/include/python3.11 /tmp/t.c -o /tmp/t && /tmp/t && echo compile-ok
    """
    status, out, err = run(image, script)
    assert status == 0, f"{out}\n{err}"
    assert "release 13.0" in out
    for marker in ("cuda-headers-ok", "cuda-home-ok", "python-headers-ok", "compile-ok"):
        assert marker in out
    assert "ptxas" in out.lower()


def test_env_user_banner_and_labels(image: str) -> None:
    status, out, err = run(
        image,
        "id -u; id -g; umask; command -v python;"
        " echo $CUDA_DEVICE_ORDER $VLLM_USE_FLASHINFER_SAMPLER $DYNAMO_ENGINE",
    )
    assert status == 0, err
    assert out.split() == [
        "1000",
        "0",
        "0002",
        "/opt/dynamo/venv/bin/python",
        "PCI_BUS_ID",
        "1",
        "vllm",
    ]
    assert err.startswith("== vllm-runtime ")
    labels = docker.from_env().images.get(image).labels
    assert labels["ai.dynamo.framework"] == "vllm"
    assert labels["ai.dynamo.cuda.version"] == "13.0"
    assert labels["ai.dynamo.version"] == "1.6.1"
    assert labels["ai.dynamo.lock.vllm"].startswith("sha256:")
    for key in ("org.opencontainers.image.version", "org.opencontainers.image.revision"):
        assert labels.get(key) not in (None, "", "unknown"), key


@pytest.fixture(scope="module")
def base_url(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model_dir = tiny_model(
        tmp_path_factory.mktemp("model") / MODEL_NAME, {"replay.jsonl": ("greeting", REPLY)}
    )
    with replaying_deployment(image, "vllm-it", model_dir, MODEL_NAME) as url:
        yield url


def test_frontend_and_mocker_answer_inside_the_image(base_url: str) -> None:
    request = replay_chat_request(MODEL_NAME, "greeting", "Say hello.")
    response = requests.post(f"{base_url}/v1/chat/completions", json=request, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == REPLY


def test_launcher_starts_the_vllm_worker(image: str, tmp_path: Path) -> None:
    """dynamo-launch's default engine here is vLLM; with no GPU the real worker fails to start,
    and the launcher stops the deployment and says which component exited."""
    model_dir = tiny_model(tmp_path / MODEL_NAME, {})
    status, out, err = run(
        image,
        f"timeout 240 dynamo-launch --model {MODEL_MOUNT} --discovery file",
        volumes={str(model_dir): {"bind": MODEL_MOUNT, "mode": "ro"}},
    )
    assert status != 0
    assert "dynamo.vllm" in out + err, (out + err)[-3000:]


def test_layers_follow_the_framework_definition(image: str) -> None:
    """Least-changing first, engine layers before our code, none over the limit."""
    report = layer_report(docker.from_env(), image)
    assert all(layer.size <= MAX_LAYER_BYTES for layer in report.layers), [
        (layer.slot, layer.size) for layer in report.layers if layer.size > MAX_LAYER_BYTES
    ]
    slots = [layer.slot for layer in report.layers if layer.slot]
    assert slots[:6] == ["cuda-1", "cuda-2", "cuda-3", "cuda-4", "cuda-5", "torch"]
    assert slots.index("engine") < slots.index("dynamo") < slots.index("venv")
    by_slot = {layer.slot: layer for layer in report.layers if layer.slot}
    assert list(by_slot["engine"].distributions) == ["vllm"]
    assert list(by_slot["torch"].distributions) == ["torch"]
    assert "nvidia-cuda-nvcc" in json.dumps(
        [by_slot[f"cuda-{i}"].distributions for i in range(1, 6)]
    )
    # Our code is one small layer after every venv layer.
    code = report.layers[-1]
    assert code.paths == ["/opt/dynamo/venv/lib/python3.11/site-packages/dynamo_images/"]
    assert code.size < 1_000_000
