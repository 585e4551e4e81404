"""The endpoint picker (docker/epp:runtime) routing among real Dynamo workers, driven as Envoy
drives it.

etcd, two `python -m dynamo.mocker` workers and a Dynamo frontend (docker/dynamo:runtime) and
the EPP run in containers on a private network. The EPP finds the workers in Dynamo's etcd
registry (the keys the workers write; no static list) and scrapes their system ports
(DYN_SYSTEM_PORT 8081, the port of the EPP's default metrics URL template) with its default
metric names for Dynamo. The `extproc-client` Go command (src/go/epp/cmd/extproc-client)
sends it requests exactly as Envoy's ext_proc filter does: one gRPC stream per request,
request_headers then request_body chunks up to end_of_stream; it prints the destination from
the x-gateway-destination-endpoint header mutation and the envoy.lb dynamic metadata, or the
ImmediateResponse, or the gRPC status.

Each worker answers the replay request with its own name, and the frontend sends a request to
the worker named by the x-worker-instance-id header the EPP sets, so a reply shows which
worker really served a pick. The workers run at most 2 sequences at once, so concurrent
requests to one of them wait in its queue, which its metrics report.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from built_images import built_image
from docker.models.containers import Container
from dynamo_deployment import (
    MODEL_MOUNT,
    Deployment,
    deployment,
    replay_chat_request,
    start_dynamo,
    tiny_model,
)

DYNAMO_INFO = Path("docker.dynamo/runtime.docker-info.json")
EPP_INFO = Path("docker.epp/runtime.docker-info.json")
CLIENT = Path("src.go.epp.cmd.extproc-client/extproc-client")
MODEL_NAME = "tiny-mocker"
WORKERS = ("worker-a", "worker-b")
REPLAY_ID = "whoami"
SYSTEM_PORT = 8081  # the port of the EPP's default --etcd-metrics-url-template
TIMEOUT_S = 60
EPP_MEMORY_LIMIT_BYTES = 256 << 20  # the container limit of the "epp-unready" EPP
# Picks are paced so that few of them fall between two scrapes (50 ms): the EPP counts the
# picks it made since the last scrape as queued, and none of them reaches a worker here.
PICK_INTERVAL = "20ms"
# A long shared system prompt (about 30 of the prefix scorer's 64-character blocks).
SYSTEM_PROMPT = " ".join(f"Rule {i}: answer briefly and cite the source." for i in range(45))


def reply_of(worker: str) -> str:
    return f"Served by {worker}."


@dataclass
class Stack:
    dep: Deployment
    frontend_url: str
    epp: str  # ext_proc address of the EPP, host:port
    epp_http: str  # its metrics/debug URL
    unready_epp: str
    unready_epp_http: str
    worker_ip: dict[str, str]  # worker name -> address on the network
    instance_id: dict[str, str]  # worker name -> Dynamo instance id (from the registry)

    def worker_at(self, destination: str) -> str:
        """The worker whose address a destination (or its first fallback) names."""
        host = destination.split(",")[0].rsplit(":", 1)[0]
        names = [name for name, ip in self.worker_ip.items() if ip == host]
        assert names, f"{destination!r} is no worker's address ({self.worker_ip})"
        return names[0]

    def pool(self, http: str | None = None) -> dict[str, dict]:
        """The EPP's endpoints (/debug/endpoints) by worker name."""
        entries = requests.get(f"{http or self.epp_http}/debug/endpoints", timeout=5).json()
        return {self.worker_at(e["address"]): e for e in entries or []}

    def wait_for_pool(
        self, what: str, ok: Callable[[dict[str, dict]], bool], http: str | None = None
    ) -> dict[str, dict]:
        deadline = time.monotonic() + TIMEOUT_S
        pool: dict[str, dict] = {}
        while time.monotonic() < deadline:
            try:
                pool = self.pool(http)
            except (requests.RequestException, ValueError):
                pool = {}
            if ok(pool):
                return pool
            self.dep.fail_if_exited()
            time.sleep(0.05)
        pytest.fail(f"{what}: not within {TIMEOUT_S} s; EPP pool {pool}\n{self.dep.logs()}")

    def serve(self, worker_instance_id: str, content: str) -> str:
        """Sends a chat completion through the frontend to the worker instance, as the gateway
        does with the EPP's x-worker-instance-id header; returns the reply text."""
        response = requests.post(
            f"{self.frontend_url}/v1/chat/completions",
            json=replay_chat_request(MODEL_NAME, REPLAY_ID, content),
            headers={"x-worker-instance-id": worker_instance_id},
            timeout=TIMEOUT_S,
        )
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"]


def start_epp(dep: Deployment, image: str, name: str, *args: str, **docker_args) -> tuple[str, str]:
    """An EPP on the Dynamo registry; returns its ext_proc address and metrics URL on loopback."""
    epp: Container = dep.start(
        name,
        ["--etcd-endpoints=http://etcd:2379", *args],
        image=image,
        ports={"9002/tcp": ("127.0.0.1", None), "9090/tcp": ("127.0.0.1", None)},
        **docker_args,
    )
    return (
        f"127.0.0.1:{dep.host_port(epp, 9002)}",
        f"http://127.0.0.1:{dep.host_port(epp, 9090)}",
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    model = tiny_model(
        tmp_path_factory.mktemp("model") / MODEL_NAME,
        {f"{w}.jsonl": (REPLAY_ID, reply_of(w)) for w in WORKERS},
    )
    epp_image = built_image(EPP_INFO)
    with deployment(built_image(DYNAMO_INFO), "epp-it") as dep:
        frontend_url, workers = start_dynamo(
            dep,
            model,
            MODEL_NAME,
            {
                w: [
                    "--response-replay-trace-path",
                    f"{MODEL_MOUNT}/{w}.jsonl",
                    "--max-num-seqs",
                    "2",
                ]
                for w in WORKERS
            },
            SYSTEM_PORT,
        )
        epp, epp_http = start_epp(dep, epp_image, "epp")
        # The same registry, with metrics looked for where no worker serves them: the EPP
        # knows both workers and their model, but never sees one ready. It also runs under a
        # container memory limit (test_go_runtime_settings).
        unready, unready_http = start_epp(
            dep,
            epp_image,
            "epp-unready",
            "--etcd-metrics-url-template=http://{host}:8082/metrics",
            mem_limit=f"{EPP_MEMORY_LIMIT_BYTES}b",
        )
        s = Stack(
            dep=dep,
            frontend_url=frontend_url,
            epp=epp,
            epp_http=epp_http,
            unready_epp=unready,
            unready_epp_http=unready_http,
            worker_ip={w: dep.ip(c) for w, c in workers.items()},
            instance_id={},
        )
        pool = s.wait_for_pool(
            "both workers found in etcd and ready",
            lambda p: sorted(p) == sorted(WORKERS) and all(e["ready"] for e in p.values()),
        )
        for w, entry in pool.items():
            assert entry["source"] == "etcd" and entry["models"] == [MODEL_NAME], entry
            s.instance_id[w] = entry["instanceID"]
        # The frontend sees an instance a little after it appears in etcd.
        for w in WORKERS:
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                try:
                    reply = s.serve(s.instance_id[w], "hello")
                    break
                except (AssertionError, requests.RequestException):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            assert reply == reply_of(w), f"instance {s.instance_id[w]} is not {w}: {reply!r}"
        yield s


def ext_proc(addr: str, reqs: list[dict], interval: str = "0s") -> list[dict]:
    """Runs the requests through extproc-client, one after the other; returns its answers."""
    proc = subprocess.run(
        [str(CLIENT.resolve()), f"--addr={addr}", f"--interval={interval}"],
        input="".join(json.dumps(r) + "\n" for r in reqs),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["id"] for a in answers] == [r["id"] for r in reqs], proc.stdout
    return answers


def chat(content: str, system: str | None = None, model: str = MODEL_NAME, **extra) -> dict:
    """A chat completion request for extproc-client; the body arrives in 3 chunks."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": content})
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": 16,
        "nvext": {"annotations": [f"output_replay_id:{REPLAY_ID}"]},
    }
    return {"id": uuid.uuid4().hex[:12], "body": json.dumps(body), "chunks": 3, **extra}


def routed_to(s: Stack, answer: dict, eligible: int = 2) -> str:
    """Checks a routing answer as Envoy would use it; returns the picked worker."""
    assert answer["status"] == 200, answer
    # One value, twice: the header Envoy routes on and the envoy.lb metadata for the LB policy.
    # The image's config has maxNumOfEndpoints 2: the other eligible worker is the fallback.
    assert answer["destination"] == answer["metadata_destination"], answer
    assert len(set(answer["destination"].split(","))) == min(eligible, 2), answer
    assert answer["clear_route_cache"] and answer["body_returned"], answer
    worker = s.worker_at(answer["destination"])
    assert answer["set_headers"]["x-worker-instance-id"] == s.instance_id[worker], answer
    return worker


@contextmanager
def busy(s: Stack, worker: str, requests_n: int = 16) -> Iterator[None]:
    """Keeps one worker busy with concurrent chat completions (80 tokens each) sent through the
    frontend: 2 run, the others wait in its queue. Waits for all of them at the end."""
    with ThreadPoolExecutor(requests_n) as pool:
        futures = [
            pool.submit(
                requests.post,
                f"{s.frontend_url}/v1/chat/completions",
                json={
                    "model": MODEL_NAME,
                    "messages": [{"role": "user", "content": f"load {i}"}],
                    "max_tokens": 80,
                },
                headers={"x-worker-instance-id": s.instance_id[worker]},
                timeout=TIMEOUT_S,
            )
            for i in range(requests_n)
        ]
        yield
    assert [f.result().status_code for f in futures] == [200] * requests_n


def idle(pool: dict[str, dict]) -> bool:
    return sorted(pool) == sorted(WORKERS) and all(
        e["ready"] and e.get("waitingQueue") == 0 for e in pool.values()
    )


def test_picks_follow_load(stack: Stack) -> None:
    a, b = WORKERS
    stack.wait_for_pool("workers idle", idle)

    def picks() -> Counter[str]:
        """Where 20 new prompts (no shared prefix) go."""
        reqs = [chat(f"probe {i}: {uuid.uuid4()}") for i in range(20)]
        return Counter(routed_to(stack, r) for r in ext_proc(stack.epp, reqs, PICK_INTERVAL))

    with busy(stack, a):
        # The EPP reads the real mocker's queue under its default metric names for Dynamo.
        pool = stack.wait_for_pool(
            f"{a} busy, {b} idle",
            lambda p: (p[a].get("waitingQueue") or 0) >= 6 and p[b].get("waitingQueue") == 0,
        )
        assert pool[a]["running"] >= 1, pool
        first = picks()
        stack.wait_for_pool(f"{a} drained its queue", lambda p: p[a].get("waitingQueue") == 0)
    with busy(stack, b):
        stack.wait_for_pool(
            f"{b} busy, {a} idle",
            lambda p: (p[b].get("waitingQueue") or 0) >= 6 and p[a].get("waitingQueue") == 0,
        )
        second = picks()
    assert first[b] >= 16, f"with {a} busy: {dict(first)}"
    assert second[a] >= 16, f"with {b} busy: {dict(second)}"


def test_same_prompt_prefix_sticks_to_one_worker_and_it_serves(stack: Stack) -> None:
    stack.wait_for_pool("workers idle", idle)
    # Two conversations with long system prompts, interleaved, each turn with a new question.
    systems = {c: f"Conversation {c}. {SYSTEM_PROMPT}" for c in ("one", "two")}
    turns = [(c, chat(f"question {i}?", systems[c])) for i in range(6) for c in systems]
    answers = ext_proc(stack.epp, [r for _, r in turns], PICK_INTERVAL)
    by_conversation: dict[str, list[str]] = {c: [] for c in systems}
    for (conversation, _), answer in zip(turns, answers, strict=True):
        by_conversation[conversation].append(routed_to(stack, answer))
    for conversation, workers in by_conversation.items():
        assert len(set(workers)) == 1, f"conversation {conversation} went to {workers}"
        # The worker the EPP picked answers the request (its reply names it).
        worker = workers[0]
        assert stack.serve(stack.instance_id[worker], systems[conversation]) == reply_of(worker)


def test_subset_hint_limits_the_pick(stack: Stack) -> None:
    pool = stack.wait_for_pool("workers idle", idle)
    for w in WORKERS:
        answers = ext_proc(
            stack.epp, [chat(f"subset {i}", subset=[pool[w]["address"]]) for i in range(4)]
        )
        assert [routed_to(stack, a, eligible=1) for a in answers] == [w] * 4
    (answer,) = ext_proc(stack.epp, [chat("subset", subset=["192.0.2.1:9"])])
    assert answer["status"] == 503, answer
    assert "subset hint" in answer["error_body"]["error"]["message"], answer


def test_unknown_model_is_404_listing_the_served_models(stack: Stack) -> None:
    (answer,) = ext_proc(stack.epp, [chat("hello", model="no-such-model")])
    assert answer["status"] == 404, answer
    error = answer["error_body"]["error"]
    assert error["code"] == 404 and error["type"] == "Not Found", answer
    assert '"no-such-model"' in error["message"] and error["message"].endswith(
        f"available models: {MODEL_NAME}"
    ), answer


def test_no_ready_endpoint_is_503(stack: Stack) -> None:
    pool = stack.wait_for_pool(
        "the unready EPP knows both workers",
        lambda p: sorted(p) == sorted(WORKERS) and all(e.get("lastError") for e in p.values()),
        http=stack.unready_epp_http,
    )
    assert not any(e["ready"] for e in pool.values()), pool
    answers = ext_proc(
        stack.unready_epp, [chat("hello"), {"id": "models", "method": "GET", "path": "/v1/models"}]
    )
    for answer in answers:
        assert answer["status"] == 503, answer
        assert answer["error_body"]["error"]["code"] == 503, answer
    # The registry names the model, so it is not unknown (404): it has no ready worker.
    assert (
        answers[0]["error_body"]["error"]["message"]
        == f'no ready endpoint for model "{MODEL_NAME}"'
    )


def go_runtime_metric(metrics_url: str, name: str) -> float:
    text = requests.get(f"{metrics_url}/metrics", timeout=TIMEOUT_S).text
    values = [line.split()[1] for line in text.splitlines() if line.startswith(name + " ")]
    assert len(values) == 1, f"{name} not exported once:\n{text}"
    return float(values[0])


def test_go_runtime_settings(stack: Stack) -> None:
    """The EPP collects garbage at GOGC=400 (its default; the environment can override it) and,
    in a container with a memory limit, keeps its heap under 90% of that limit."""
    for url in (stack.epp_http, stack.unready_epp_http):
        assert go_runtime_metric(url, "go_gc_gogc_percent") == 400
    # No container limit: no Go memory limit either (math.MaxInt64).
    assert go_runtime_metric(stack.epp_http, "go_gc_gomemlimit_bytes") >= 2**63 - 1024
    assert go_runtime_metric(stack.unready_epp_http, "go_gc_gomemlimit_bytes") == int(
        EPP_MEMORY_LIMIT_BYTES * 0.9
    )


def test_malformed_streams_end_with_invalid_argument(stack: Stack) -> None:
    answers = ext_proc(
        stack.epp,
        [
            chat("hello", malformed="body-before-headers"),
            chat("hello", malformed="empty-message"),
        ],
    )
    assert [(a["status"], a.get("grpc_code")) for a in answers] == [(0, "InvalidArgument")] * 2
    assert "request_body before request_headers" in answers[0]["grpc_message"], answers
    assert "without a request phase" in answers[1]["grpc_message"], answers
    # The EPP still works after them.
    routed_to(stack, ext_proc(stack.epp, [chat("hello")])[0])


def test_body_that_is_not_json_is_routed_without_model_checks(stack: Stack) -> None:
    # As documented: the model server, not the EPP, answers such a request (with its 400).
    (answer,) = ext_proc(stack.epp, [{"id": "not-json", "body": "{not json", "chunks": 2}])
    routed_to(stack, answer)
