"""docker/dynamo:runtime end to end: etcd, the Dynamo frontend and a mocker worker, each in its own
container on a private network, answering real OpenAI-style requests.

Runs on the real Docker engine with the image Pants built for this test
(runtime_package_dependencies) and a tiny model made here (nothing is downloaded). Every
container and the network are removed, also on failure.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import requests
from built_images import built_image
from docker.models.containers import Container
from tokenizers import Tokenizer

from dynamo_images.tiny_model import write_tiny_model

DOCKER_INFO = Path("docker.dynamo/runtime.docker-info.json")
MODEL_NAME = "tiny-mocker"
REPLY = "Hello from a Dynamo container!"
REPLAY_ID = "greeting"
READY_TIMEOUT_S = 120


@dataclass
class Deployment:
    client: docker.DockerClient
    image: str
    network: str
    containers: list[Container] = field(default_factory=list)

    def start(self, name: str, command: list[str], **kwargs) -> Container:
        container = self.client.containers.run(
            self.image,
            command,
            name=f"{self.network}-{name}",
            hostname=name,
            network=self.network,
            detach=True,
            labels={"dynamo-images.test": self.network},
            **kwargs,
        )
        self.containers.append(container)
        return container

    def logs(self) -> str:
        out = []
        for container in self.containers:
            try:
                out.append(
                    f"--- {container.name}\n{container.logs(tail=40).decode(errors='replace')}"
                )
            except docker.errors.NotFound:
                pass
        return "\n".join(out)


@pytest.fixture(scope="module")
def image() -> str:
    return built_image(DOCKER_INFO)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = write_tiny_model(tmp_path_factory.mktemp("model") / MODEL_NAME)
    # A replay trace makes the mocker answer known text instead of random token ids.
    token_ids = Tokenizer.from_file(str(model / "tokenizer.json")).encode(REPLY).ids
    trace = {
        "request_id": REPLAY_ID,
        "input_length": 8,
        "output_length": len(token_ids),
        "hash_ids": [1],
        "output_token_ids": token_ids,
    }
    (model / "replay.jsonl").write_text(json.dumps(trace) + "\n")
    for path in (model, *model.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's UID 1000
    model.parent.chmod(0o755)
    return model


@pytest.fixture(scope="module")
def deployment(image: str, model_dir: Path) -> Iterator[tuple[Deployment, str]]:
    client = docker.from_env()
    network = f"dynamo-it-{uuid.uuid4().hex[:8]}"
    client.networks.create(network, driver="bridge", labels={"dynamo-images.test": network})
    deployment = Deployment(client, image, network)
    try:
        discovery = {"DYN_DISCOVERY_BACKEND": "etcd", "ETCD_ENDPOINTS": "http://etcd:2379"}
        deployment.start(
            "etcd",
            [
                "etcd",
                "--data-dir",
                "/tmp/etcd",
                "--listen-client-urls",
                "http://0.0.0.0:2379",
                "--advertise-client-urls",
                "http://etcd:2379",
            ],
        )
        frontend = deployment.start(
            "frontend",
            ["python", "-m", "dynamo.frontend", "--http-port", "8000"],
            environment=discovery,
            ports={"8000/tcp": ("127.0.0.1", None)},
        )
        deployment.start(
            "worker",
            [
                "python",
                "-m",
                "dynamo.mocker",
                "--model-path",
                "/models/tiny",
                "--model-name",
                MODEL_NAME,
                "--response-replay-trace-path",
                "/models/tiny/replay.jsonl",
                "--speedup-ratio",
                "10",
            ],
            environment={
                **discovery,
                "DYN_SYSTEM_PORT": "9345",
                "DYN_SYSTEM_STARTING_HEALTH_STATUS": "ready",
            },
            volumes={str(model_dir): {"bind": "/models/tiny", "mode": "ro"}},
        )
        frontend.reload()
        port = frontend.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
        base_url = f"http://127.0.0.1:{port}"
        wait_for_model(base_url, deployment)
        yield deployment, base_url
    finally:
        for container in deployment.containers:
            container.remove(force=True)
        client.networks.get(network).remove()
        leftovers = client.containers.list(
            all=True, filters={"label": f"dynamo-images.test={network}"}
        )
        assert not leftovers, f"containers left behind: {[c.name for c in leftovers]}"


def wait_for_model(base_url: str, deployment: Deployment) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            models = requests.get(f"{base_url}/v1/models", timeout=2).json()
            if any(m["id"] == MODEL_NAME for m in models.get("data", [])):
                return
        except (requests.RequestException, ValueError):
            pass
        for container in deployment.containers:
            container.reload()
            if container.status == "exited":
                pytest.fail(f"{container.name} exited early:\n{deployment.logs()}")
        time.sleep(0.5)
    pytest.fail(
        f"model {MODEL_NAME} was not listed within {READY_TIMEOUT_S} s:\n{deployment.logs()}"
    )


def chat_request(stream: bool) -> dict:
    return {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 64,
        "stream": stream,
        "nvext": {"annotations": [f"output_replay_id:{REPLAY_ID}"]},
    }


def test_models_lists_the_worker_model(deployment: tuple[Deployment, str]) -> None:
    _, base_url = deployment
    response = requests.get(f"{base_url}/v1/models", timeout=10)
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == [MODEL_NAME]


def test_chat_completion(deployment: tuple[Deployment, str]) -> None:
    _, base_url = deployment
    response = requests.post(
        f"{base_url}/v1/chat/completions", json=chat_request(stream=False), timeout=60
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == MODEL_NAME
    assert body["choices"][0]["message"]["content"] == REPLY
    assert body["usage"]["completion_tokens"] > 0


def test_streaming_chat_completion(deployment: tuple[Deployment, str]) -> None:
    _, base_url = deployment
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


def test_unknown_model_is_an_error(deployment: tuple[Deployment, str]) -> None:
    _, base_url = deployment
    request = {**chat_request(stream=False), "model": "no-such-model"}
    response = requests.post(f"{base_url}/v1/chat/completions", json=request, timeout=30)
    assert response.status_code == 404


def test_image_runs_as_dynamo_with_banner_and_metadata(image: str) -> None:
    client = docker.from_env()
    container = client.containers.run(
        image, ["sh", "-c", "id -u; id -g; umask; command -v python"], detach=True
    )
    try:
        assert container.wait(timeout=60)["StatusCode"] == 0
        stdout = container.logs(stdout=True, stderr=False).decode().split()
        stderr = container.logs(stdout=False, stderr=True).decode()
    finally:
        container.remove(force=True)
    assert stdout == ["1000", "0", "0002", "/opt/dynamo/venv/bin/python"]
    assert stderr.startswith("== dynamo-runtime ")
    labels = client.images.get(image).labels
    for key in (
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "ai.dynamo.version",
        "ai.dynamo.lock.python-default",
    ):
        assert labels.get(key) not in (None, "", "unknown"), key
    assert labels["ai.dynamo.lock.python-default"].startswith("sha256:")
