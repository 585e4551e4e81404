"""docker/dynamo:runtime end to end: etcd, the Dynamo frontend and a mocker worker, each in its own
container on a private network, answering real OpenAI-style requests.

Runs on the real Docker engine with the image Pants built for this test
(runtime_package_dependencies) and a tiny model made here (nothing is downloaded). Every
container and the network are removed, also on failure.
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
from dynamo_deployment import replay_chat_request, replaying_deployment, tiny_model

from dynamo_images.cli.layers import layer_report, render

DOCKER_INFO = Path("docker.dynamo/runtime.docker-info.json")
MODEL_NAME = "tiny-mocker"
REPLY = "Hello from a Dynamo container!"
REPLAY_ID = "greeting"


@pytest.fixture(scope="module")
def image() -> str:
    return built_image(DOCKER_INFO)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(
        tmp_path_factory.mktemp("model") / MODEL_NAME, {"replay.jsonl": (REPLAY_ID, REPLY)}
    )


@pytest.fixture(scope="module")
def base_url(image: str, model_dir: Path) -> Iterator[str]:
    """The URL of a frontend with one mocker worker that answers REPLY."""
    with replaying_deployment(image, "dynamo-it", model_dir, MODEL_NAME) as url:
        yield url


def chat_request(stream: bool) -> dict:
    return replay_chat_request(MODEL_NAME, REPLAY_ID, "Say hello.", stream)


def test_models_lists_the_worker_model(base_url: str) -> None:
    response = requests.get(f"{base_url}/v1/models", timeout=10)
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == [MODEL_NAME]


def test_chat_completion(base_url: str) -> None:
    response = requests.post(
        f"{base_url}/v1/chat/completions", json=chat_request(stream=False), timeout=60
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == MODEL_NAME
    assert body["choices"][0]["message"]["content"] == REPLY
    assert body["usage"]["completion_tokens"] > 0


def test_streaming_chat_completion(base_url: str) -> None:
    with requests.post(
        f"{base_url}/v1/chat/completions", json=chat_request(stream=True), stream=True, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = []
        for line in response.iter_lines(decode_unicode=True):
            if not line or not line.startswith("data: "):
                continue
            payload = line[len("data: ") :]
            if payload == "[DONE]":
                break
            chunks.append(json.loads(payload))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len(chunks) > 1, "a streamed reply arrives in several chunks"
    assert text == REPLY


def test_unknown_model_is_an_error(base_url: str) -> None:
    request = {**chat_request(stream=False), "model": "no-such-model"}
    response = requests.post(f"{base_url}/v1/chat/completions", json=request, timeout=30)
    assert response.status_code == 404


def test_image_runs_as_dynamo_with_banner_and_metadata(image: str) -> None:
    ran = run_in_image(image, "id -u; id -g; umask; command -v python", timeout=60)
    assert ran.status == 0, ran.err
    assert ran.out.split() == ["1000", "0", "0002", "/opt/dynamo/venv/bin/python"]
    assert ran.err.startswith("== dynamo-runtime ")
    labels = docker.from_env().images.get(image).labels
    for key in (
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "ai.dynamo.version",
        "ai.dynamo.lock.python-default",
    ):
        assert labels.get(key) not in (None, "", "unknown"), key
    assert labels["ai.dynamo.lock.python-default"].startswith("sha256:")


def test_layer_report_names_each_slot_and_its_distributions(image: str) -> None:
    report = layer_report(docker.from_env(), image)
    by_slot = {layer.slot: layer for layer in report.layers if layer.slot}
    assert by_slot["dynamo"].distributions == {"ai-dynamo": "1.6.1", "ai-dynamo-runtime": "1.6.1"}
    # No engine, no CUDA: those slots are empty layers.
    assert by_slot["engine"].distributions == {} and by_slot["cuda-1"].distributions == {}
    assert "transformers" in by_slot["third-party-1"].distributions
    assert sum(layer.size for layer in report.layers) == report.size
    assert "[dynamo] ai-dynamo 1.6.1, ai-dynamo-runtime 1.6.1" in render(report)
