"""Dynamo deployments on the real Docker engine for the integration tests: etcd, frontends and
mocker workers of the image under test (plus any other image), each in its own container on a
private network, serving a tiny model made here (nothing is downloaded). Every container and
the network are removed when the `deployment` block ends, also on failure.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import requests
from docker.models.containers import Container
from tokenizers import Tokenizer

from dynamo_images.tiny_model import write_tiny_model

# Where mocker containers see the model folder.
MODEL_MOUNT = "/models/tiny"
READY_TIMEOUT_S = 120
# Workers and frontends find each other through the etcd container.
ETCD_DISCOVERY = {"DYN_DISCOVERY_BACKEND": "etcd", "ETCD_ENDPOINTS": "http://etcd:2379"}


@dataclass
class Deployment:
    client: docker.DockerClient
    image: str
    network: str
    containers: list[Container] = field(default_factory=list)

    def start(self, name: str, command: list[str], image: str | None = None, **kwargs) -> Container:
        """Starts a container of `image` (default: the deployment's) reachable as `name` on
        the network."""
        container = self.client.containers.run(
            image or self.image,
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

    def ip(self, container: Container) -> str:
        """The container's address on the deployment's network."""
        container.reload()
        return container.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    @staticmethod
    def host_port(container: Container, port: int) -> int:
        """The loopback port Docker published the container's TCP `port` on."""
        container.reload()
        return int(container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"])

    def fail_if_exited(self) -> None:
        for container in self.containers:
            container.reload()
            if container.status == "exited":
                pytest.fail(f"{container.name} exited early:\n{self.logs()}")

    def logs(self, tail: int = 40) -> str:
        out = []
        for container in self.containers:
            try:
                text = container.logs(tail=tail).decode(errors="replace")
            except docker.errors.NotFound:
                continue
            out.append(f"--- {container.name}\n{text}")
        return "\n".join(out)


@contextmanager
def deployment(image: str, prefix: str) -> Iterator[Deployment]:
    """A private bridge network for containers of `image`, removed with them at the end."""
    client = docker.from_env()
    network = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client.networks.create(network, driver="bridge", labels={"dynamo-images.test": network})
    dep = Deployment(client, image, network)
    try:
        yield dep
    finally:
        for container in dep.containers:
            container.remove(force=True)
        client.networks.get(network).remove()
        leftovers = client.containers.list(
            all=True, filters={"label": f"dynamo-images.test={network}"}
        )
        assert not leftovers, f"containers left behind: {[c.name for c in leftovers]}"


def tiny_model(directory: Path, replays: Mapping[str, tuple[str, str]]) -> Path:
    """Writes the tiny mocker model to `directory`, readable by the image's UID 1000, with a
    replay trace file per entry of `replays` (file name -> (request id, reply text)): a mocker
    started with `--response-replay-trace-path` on it answers requests annotated
    `output_replay_id:<request id>` with that text instead of random token ids."""
    model = write_tiny_model(directory)
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    for file_name, (request_id, text) in replays.items():
        token_ids = tokenizer.encode(text).ids
        trace = {
            "request_id": request_id,
            "input_length": 8,
            "output_length": len(token_ids),
            "hash_ids": [1],
            "output_token_ids": token_ids,
        }
        (model / file_name).write_text(json.dumps(trace) + "\n")
    for path in (model, *model.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    model.parent.chmod(0o755)
    return model


def start_etcd(dep: Deployment) -> Container:
    return dep.start(
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


def start_frontend(dep: Deployment, name: str = "frontend") -> tuple[Container, str]:
    """A Dynamo frontend whose HTTP port is published on loopback; returns it and its URL."""
    frontend = dep.start(
        name,
        ["python", "-m", "dynamo.frontend", "--http-port", "8000"],
        environment=ETCD_DISCOVERY,
        ports={"8000/tcp": ("127.0.0.1", None)},
    )
    return frontend, f"http://127.0.0.1:{dep.host_port(frontend, 8000)}"


def start_mocker(
    dep: Deployment,
    name: str,
    model_dir: Path,
    model_name: str,
    *args: str,
    system_port: int,
) -> Container:
    """A `python -m dynamo.mocker` worker serving `model_dir` as `model_name`, with its
    metrics and health on `system_port` (DYN_SYSTEM_PORT); `args` are more mocker options
    (paths in the model folder start with MODEL_MOUNT)."""
    return dep.start(
        name,
        [
            "python",
            "-m",
            "dynamo.mocker",
            "--model-path",
            MODEL_MOUNT,
            "--model-name",
            model_name,
            *args,
        ],
        environment={
            **ETCD_DISCOVERY,
            "DYN_SYSTEM_PORT": str(system_port),
            "DYN_SYSTEM_STARTING_HEALTH_STATUS": "ready",
        },
        volumes={str(model_dir): {"bind": MODEL_MOUNT, "mode": "ro"}},
    )


def start_dynamo(
    dep: Deployment,
    model_dir: Path,
    model_name: str,
    workers: Mapping[str, Sequence[str]],
    system_port: int,
) -> tuple[str, dict[str, Container]]:
    """etcd, a frontend and a mocker per entry of `workers` (container name -> more mocker
    options), as start_mocker starts them; waits until the frontend lists the model. Returns
    the frontend's URL and the worker containers."""
    start_etcd(dep)
    _, base_url = start_frontend(dep)
    containers = {
        name: start_mocker(dep, name, model_dir, model_name, *args, system_port=system_port)
        for name, args in workers.items()
    }
    wait_for_model(base_url, dep, model_name)
    return base_url, containers


def wait_for_model(base_url: str, dep: Deployment, model_name: str) -> None:
    """Waits until the frontend at `base_url` lists `model_name`."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            models = requests.get(f"{base_url}/v1/models", timeout=2).json()
            if any(m["id"] == model_name for m in models.get("data", [])):
                return
        except (requests.RequestException, ValueError):
            pass
        dep.fail_if_exited()
        time.sleep(0.5)
    pytest.fail(f"model {model_name} was not listed within {READY_TIMEOUT_S} s:\n{dep.logs()}")


def replay_chat_request(
    model_name: str, replay_id: str, content: str, stream: bool = False
) -> dict:
    """A chat completion that a mocker with a replay trace answers with that trace's text."""
    return {
        "model": model_name,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 64,
        "stream": stream,
        "nvext": {"annotations": [f"output_replay_id:{replay_id}"]},
    }


@contextmanager
def replaying_deployment(
    image: str, prefix: str, model_dir: Path, model_name: str, system_port: int = 9345
) -> Iterator[str]:
    """etcd, a frontend and one mocker of `image` that answers from `model_dir`/replay.jsonl (a
    tiny_model replay file); yields the frontend's URL. Everything is removed at the end."""
    with deployment(image, prefix) as dep:
        replay = ["--response-replay-trace-path", f"{MODEL_MOUNT}/replay.jsonl"]
        url, _ = start_dynamo(
            dep, model_dir, model_name, {"worker": [*replay, "--speedup-ratio", "10"]}, system_port
        )
        yield url
