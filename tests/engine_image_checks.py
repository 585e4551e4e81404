"""Checks every engine image (vLLM, SGLang, ...) passes, on the real Docker engine: the JIT
toolchain its kernels compile with, Dynamo's frontend and mocker answering inside it, and the
layer layout of the framework definition (pants-plugins/macros.py)."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import requests
from built_images import built_image
from containers import layer_ids, run_in_image
from dynamo_deployment import MODEL_MOUNT, replay_chat_request, replaying_deployment, tiny_model

from dynamo_images.cli.layers import layer_report

MAX_LAYER_BYTES = 1_500_000_000
MODEL_NAME = "tiny-mocker"

JIT_TOOLCHAIN_PROBE = """
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


def check_jit_toolchain(image: str, cuda_release: str) -> None:
    """What Triton, FlashInfer and the engines' JIT kernels compile with on a GPU host: nvcc and
    the CUDA headers from PyPI's CUDA wheels, ptxas, gcc and CPython's headers."""
    ran = run_in_image(image, JIT_TOOLCHAIN_PROBE)
    assert ran.status == 0, f"{ran.out}\n{ran.err}"
    assert f"release {cuda_release}" in ran.out
    for marker in ("cuda-headers-ok", "cuda-home-ok", "python-headers-ok", "compile-ok"):
        assert marker in ran.out
    assert "ptxas" in ran.out.lower()


def check_runtime_identity(
    image: str, image_name: str, resolve: str, cuda: str, probe: str, expected: list[str]
) -> dict[str, str]:
    """As every framework runtime image is: user dynamo (UID 1000, GID 0), umask 002, the venv's
    python, the banner naming `image_name`, and labels for the framework, CUDA, Dynamo, the lock
    of `resolve` and the build metadata; plus what `probe` prints (`expected`, split on
    whitespace). Returns the labels for the caller's own checks."""
    ran = run_in_image(image, f"id -u; id -g; umask; command -v python; {probe}")
    assert ran.status == 0, ran.err
    assert ran.out.split() == ["1000", "0", "0002", "/opt/dynamo/venv/bin/python", *expected]
    assert ran.err.startswith(f"== {image_name} ")
    labels = docker.from_env().images.get(image).labels
    assert labels["ai.dynamo.framework"] == image_name.split("-")[0]
    assert labels["ai.dynamo.cuda.version"] == cuda
    assert labels["ai.dynamo.version"] == "1.6.1"
    assert labels[f"ai.dynamo.lock.{resolve}"].startswith("sha256:")
    for key in ("org.opencontainers.image.version", "org.opencontainers.image.revision"):
        assert labels.get(key) not in (None, "", "unknown"), key
    return labels


def check_frontend_and_mocker_answer(image: str, name: str, work_dir: Path, reply: str) -> None:
    """Dynamo's frontend and mocker, started inside the image, answer a chat completion."""
    model_dir = tiny_model(work_dir / MODEL_NAME, {"replay.jsonl": ("greeting", reply)})
    with replaying_deployment(image, name, model_dir, MODEL_NAME) as base_url:
        request = replay_chat_request(MODEL_NAME, "greeting", "Say hello.")
        response = requests.post(f"{base_url}/v1/chat/completions", json=request, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == reply


def check_launcher_starts_the_worker(image: str, worker_module: str, work_dir: Path) -> None:
    """dynamo-launch starts the image's default engine; with no GPU the real worker fails to
    start, and the launcher stops the deployment and says which component exited."""
    model_dir = tiny_model(work_dir / MODEL_NAME, {})
    ran = run_in_image(
        image,
        f"timeout 240 dynamo-launch --model {MODEL_MOUNT} --discovery file",
        volumes={str(model_dir): {"bind": MODEL_MOUNT, "mode": "ro"}},
    )
    assert ran.status != 0
    assert worker_module in ran.out + ran.err, (ran.out + ran.err)[-3000:]


def check_layers_follow_the_definition(image: str, engine: list[str]) -> None:
    """Least-changing first (the slots every engine image shares, then CUDA), engine layers before
    our code, none over the limit; our code is one small layer after every venv layer."""
    report = layer_report(docker.from_env(), image)
    assert all(layer.size <= MAX_LAYER_BYTES for layer in report.layers), [
        (layer.slot, layer.size) for layer in report.layers if layer.size > MAX_LAYER_BYTES
    ]
    slots = [layer.slot for layer in report.layers if layer.slot]
    shared = [slot for slot in slots if slot.startswith("shared-")]
    assert slots[: len(shared)] == shared, "the shared slots come first"
    assert slots[len(shared) : len(shared) + 5] == [f"cuda-{i}" for i in range(1, 6)]
    assert slots.index("engine") < slots.index("dynamo") < slots.index("venv")
    by_slot = {layer.slot: layer for layer in report.layers if layer.slot}
    assert sorted(by_slot["engine"].distributions) == sorted(engine)
    # torch and nvcc are in the image: in the shared slots when every engine locks them alike.
    early = json.dumps([by_slot[s].distributions for s in shared + ["torch"] + slots[:12]])
    assert '"torch"' in early and "nvidia-cuda-nvcc" in early
    # Our code, then the SBOM (it names the commit): the last two, small layers.
    code, sbom = report.layers[-2:]
    assert code.instruction == "COPY /files/code/ /" and "generic:dynamo-images" in code.packages
    assert code.size < 1_000_000
    assert sbom.instruction == "COPY /files/sbom/ /" and sbom.size < 2_000_000


DEV_PROBE = """
set -e
id -u
python -c 'import {modules}, pytest; print("imports-ok")'
{workspace_tests} && echo workspace-ok
su dynamo -s /bin/sh -c 'sudo -n id -u'
"""


def check_dev_image(framework: str, modules: str, workspaces: tuple[str, ...]) -> None:
    """docker/<framework>:dev: root, pytest beside the engine, the source tree at each of
    `workspaces`, passwordless sudo for dynamo, and every layer of the runtime image under it."""
    dev_image = built_image(Path(f"docker.{framework}/dev.docker-info.json"))
    probe = DEV_PROBE.format(
        modules=modules,
        workspace_tests=" && ".join(f"test -f {path}/pants.toml" for path in workspaces),
    )
    ran = run_in_image(dev_image, probe)
    assert ran.status == 0, ran.err[-3000:]
    assert ran.out.split() == ["0", "imports-ok", "workspace-ok", "0"]
    assert ran.err.startswith(f"== {framework}-dev ")
    runtime = layer_ids(built_image(Path(f"docker.{framework}/runtime.docker-info.json")))
    assert layer_ids(dev_image)[: len(runtime)] == runtime
