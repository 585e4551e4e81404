from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from dynamo_images.launch import Component, LaunchError, Plan, Supervisor, parse_args, plan

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def planned(argv: list[str], environ: dict[str, str] | None = None) -> Plan:
    environ = environ or {}
    return plan(parse_args(argv, environ), environ, Path("/work"))


def names(p: Plan) -> list[str]:
    return [c.name for c in p.components]


def test_etcd_discovery_starts_etcd_before_frontend_and_workers() -> None:
    p = planned(["--model", "/m", "--workers", "2"])
    assert names(p) == ["etcd", "frontend", "worker-0", "worker-1"]
    assert p.shared_env["ETCD_ENDPOINTS"] == "http://127.0.0.1:2379"
    assert p.shared_env["DYN_DISCOVERY_BACKEND"] == "etcd"


def test_existing_etcd_is_used_not_started() -> None:
    p = planned(["--model", "/m"], {"ETCD_ENDPOINTS": "http://etcd:2379"})
    assert names(p) == ["frontend", "worker-0"]
    assert "ETCD_ENDPOINTS" not in p.shared_env  # inherited from the environment as is


def test_file_discovery_needs_no_server() -> None:
    p = planned(["--model", "/m", "--discovery", "file"])
    assert names(p) == ["frontend", "worker-0"]
    assert p.shared_env["DYN_FILE_KV"] == "/work/discovery"


def test_nats_is_started_only_for_nats_planes() -> None:
    assert "nats" not in names(planned(["--model", "/m"]))
    p = planned(["--model", "/m", "--event-plane", "nats"])
    assert names(p)[:2] == ["etcd", "nats"]
    assert p.shared_env["NATS_SERVER"] == "nats://127.0.0.1:4222"
    assert "nats" not in names(
        planned(["--model", "/m", "--request-plane", "nats"], {"NATS_SERVER": "nats://x:4222"})
    )


def test_workers_get_their_own_system_ports_and_engine_flags() -> None:
    p = planned(
        [
            "--model",
            "/m",
            "--workers",
            "2",
            "--system-port-base",
            "7000",
            "--model-name",
            "tiny",
            "--",
            "--speedup-ratio",
            "10",
        ]
    )
    w0, w1 = p.components[-2:]
    assert (w0.env["DYN_SYSTEM_PORT"], w1.env["DYN_SYSTEM_PORT"]) == ("7000", "7001")
    assert w0.env["DYN_SYSTEM_STARTING_HEALTH_STATUS"] == "ready"  # the mocker only
    assert w0.argv[1:] == [
        "-m",
        "dynamo.mocker",
        "--model-path",
        "/m",
        "--model-name",
        "tiny",
        "--speedup-ratio",
        "10",
    ]
    assert w1.health_url == "http://127.0.0.1:7001/health"


def test_engine_defaults_to_the_image_engine() -> None:
    p = planned(["--model", "org/model"], {"DYNAMO_ENGINE": "vllm"})
    worker = p.components[-1]
    assert worker.argv[1:5] == ["-m", "dynamo.vllm", "--model", "org/model"]
    assert "DYN_SYSTEM_STARTING_HEALTH_STATUS" not in worker.env


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--engine", "tgi"], "unknown engine 'tgi'; accepted: mocker, vllm, sglang, trtllm"),
        (
            ["--discovery", "mem"],
            "discovery 'mem' works inside one process only; accepted: etcd, file",
        ),
        (["--discovery", "consul"], "unknown discovery backend 'consul'; accepted: etcd, file"),
        (["--event-plane", "kafka"], "unknown event plane 'kafka'; accepted: zmq, nats"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
    ],
)
def test_bad_options_are_refused_with_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(
        LaunchError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"
    ):
        parse_args(["--model", "/m", *argv], {})


def supervisor(components: list[Component], tmp_path: Path) -> Supervisor:
    return Supervisor(Plan(components=components, shared_env={}), {}, tmp_path / "state.json")


def test_a_component_exit_stops_the_others_and_is_the_exit_code(tmp_path: Path) -> None:
    long_running = Component("long", SLEEPER)
    failing = Component(
        "failing", [sys.executable, "-c", "import time, sys; time.sleep(0.5); sys.exit(3)"]
    )
    sup = supervisor([long_running, failing], tmp_path)
    assert sup.run(ready_timeout=10) == 3
    assert long_running.process is not None
    assert long_running.process.poll() is not None, "the other component was stopped"
    assert not (tmp_path / "state.json").exists()


def test_stop_request_stops_everything_in_reverse_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = Component("first", SLEEPER), Component("second", SLEEPER)
    sup = supervisor([first, second], tmp_path)
    state_seen = []

    def stop_later() -> None:
        while not (tmp_path / "state.json").exists():
            threading.Event().wait(0.05)
        state_seen.append((tmp_path / "state.json").read_text())
        sup.stop_requested = True

    threading.Thread(target=stop_later, daemon=True).start()
    assert sup.run(ready_timeout=10) == 0
    assert first.process is not None and second.process is not None
    assert first.process.returncode is not None and second.process.returncode is not None
    assert '"name": "second"' in state_seen[0]
    log = capsys.readouterr().err
    assert log.index("stopping second") < log.index("stopping first")


def test_unhealthy_component_fails_the_launch(tmp_path: Path) -> None:
    never_healthy = Component("server", SLEEPER, health_url="http://127.0.0.1:9/health")
    sup = supervisor([never_healthy], tmp_path)
    assert sup.run(ready_timeout=1) == 1
    assert never_healthy.process is not None
    assert never_healthy.process.poll() is not None
