"""Single-node Dynamo launcher: one command starts a whole deployment and stops it cleanly.

It starts what the chosen discovery and planes need (etcd, nats-server) unless the environment
already points at them, then the Dynamo frontend and N workers of the image's engine. SIGINT and
SIGTERM are forwarded; if any component exits, the others are stopped, in reverse start order,
and the launcher exits non-zero. A state file lists every component and its health URL for
`dynamo-health`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Worker module and model-path flag per engine, as each Dynamo 1.6.1 worker expects them.
ENGINES: dict[str, tuple[str, str]] = {
    "mocker": ("dynamo.mocker", "--model-path"),
    "vllm": ("dynamo.vllm", "--model"),
    "sglang": ("dynamo.sglang", "--model-path"),
    "trtllm": ("dynamo.trtllm", "--model-path"),
}
# `mem` discovery lives inside one process, so it cannot join a frontend and separate workers.
DISCOVERY_BACKENDS = ("etcd", "file")
PLANES = ("tcp", "nats")
EVENT_PLANES = ("zmq", "nats")
DEFAULT_STATE_FILE = Path(tempfile.gettempdir()) / "dynamo-launch.json"
STOP_GRACE_SECONDS = 10.0


class LaunchError(Exception):
    """A bad combination of options or a component that did not come up."""


@dataclass
class Component:
    """One process of the deployment."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None
    process: subprocess.Popen | None = None


@dataclass(frozen=True)
class Plan:
    """Everything the launcher will start, in order; computed without side effects."""

    components: list[Component]
    shared_env: dict[str, str]


def parse_args(argv: Sequence[str] | None, environ: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dynamo-launch",
        description="Start a single-node Dynamo deployment: discovery, frontend and N workers.",
        epilog="Arguments after `--` go to every worker, e.g. -- --speedup-ratio 10",
    )
    parser.add_argument(
        "--engine",
        default=environ.get("DYNAMO_ENGINE", "mocker"),
        help=f"worker engine, one of {', '.join(ENGINES)} (default: $DYNAMO_ENGINE or mocker)",
    )
    parser.add_argument(
        "--model", required=True, help="model folder or hub name served by every worker"
    )
    parser.add_argument(
        "--model-name", help="name clients use in requests (default: the worker's own)"
    )
    parser.add_argument("--workers", type=int, default=1, help="number of workers (default: 1)")
    parser.add_argument(
        "--discovery",
        default=environ.get("DYN_DISCOVERY_BACKEND", "etcd"),
        help=f"discovery backend, one of {', '.join(DISCOVERY_BACKENDS)}"
        " (default: $DYN_DISCOVERY_BACKEND or etcd)",
    )
    parser.add_argument(
        "--request-plane", default=environ.get("DYN_REQUEST_PLANE", "tcp"), help="tcp or nats"
    )
    parser.add_argument(
        "--event-plane", default=environ.get("DYN_EVENT_PLANE", "zmq"), help="zmq or nats"
    )
    parser.add_argument("--http-host", default="0.0.0.0")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument(
        "--system-port-base",
        type=int,
        default=9345,
        help="worker i serves /health and /metrics on this port + i (0 disables)",
    )
    parser.add_argument("--etcd-port", type=int, default=2379)
    parser.add_argument("--nats-port", type=int, default=4222)
    parser.add_argument("--nats-monitor-port", type=int, default=8222)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address the components talk to each other on"
    )
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE)
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="folder for etcd data and file discovery (default: a temp dir)",
    )
    parser.add_argument(
        "--no-frontend", action="store_true", help="start workers only (a frontend runs elsewhere)"
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=120.0, help="seconds to wait for health"
    )
    parser.add_argument("worker_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_args[:1] == ["--"]:
        args.worker_args = args.worker_args[1:]
    validate(args)
    return args


def _choose(value: str, accepted: Sequence[str], what: str) -> None:
    if value not in accepted:
        raise LaunchError(f"unknown {what} {value!r}; accepted: {', '.join(accepted)}")


def validate(args: argparse.Namespace) -> None:
    _choose(args.engine, list(ENGINES), "engine")
    if args.discovery == "mem":
        raise LaunchError(
            "discovery 'mem' works inside one process only; accepted: "
            + ", ".join(DISCOVERY_BACKENDS)
        )
    _choose(args.discovery, DISCOVERY_BACKENDS, "discovery backend")
    _choose(args.request_plane, PLANES, "request plane")
    _choose(args.event_plane, EVENT_PLANES, "event plane")
    if args.workers < 1:
        raise LaunchError(f"--workers must be at least 1, got {args.workers}")


def plan(args: argparse.Namespace, environ: dict[str, str], work_dir: Path) -> Plan:
    """Decide which processes to start and with what environment."""
    python = sys.executable
    shared: dict[str, str] = {
        "DYN_DISCOVERY_BACKEND": args.discovery,
        "DYN_REQUEST_PLANE": args.request_plane,
        "DYN_EVENT_PLANE": args.event_plane,
        # Components reach each other on one address, not the machine's primary interface.
        "DYN_TCP_RPC_HOST": args.host,
        "DYN_EVENT_PLANE_HOST": args.host,
        "DYN_TCP_RESPONSE_STREAM_HOST": args.host,
    }
    components: list[Component] = []

    if args.discovery == "etcd" and not environ.get("ETCD_ENDPOINTS"):
        client_url = f"http://{args.host}:{args.etcd_port}"
        peer_url = f"http://{args.host}:{args.etcd_port + 1}"
        components.append(
            Component(
                name="etcd",
                argv=[
                    "etcd",
                    "--data-dir",
                    str(work_dir / "etcd"),
                    "--listen-client-urls",
                    client_url,
                    "--advertise-client-urls",
                    client_url,
                    "--listen-peer-urls",
                    peer_url,
                    "--initial-advertise-peer-urls",
                    peer_url,
                    "--initial-cluster",
                    f"default={peer_url}",
                ],
                health_url=f"{client_url}/health",
            )
        )
        shared["ETCD_ENDPOINTS"] = client_url
    if args.discovery == "file":
        shared["DYN_FILE_KV"] = environ.get("DYN_FILE_KV") or str(work_dir / "discovery")

    needs_nats = "nats" in (args.request_plane, args.event_plane)
    if needs_nats and not environ.get("NATS_SERVER"):
        components.append(
            Component(
                name="nats",
                argv=[
                    "nats-server",
                    "--addr",
                    args.host,
                    "--port",
                    str(args.nats_port),
                    "--http_port",
                    str(args.nats_monitor_port),
                    "--jetstream",
                    "--store_dir",
                    str(work_dir / "nats"),
                ],
                health_url=f"http://{args.host}:{args.nats_monitor_port}/healthz",
            )
        )
        shared["NATS_SERVER"] = f"nats://{args.host}:{args.nats_port}"

    if not args.no_frontend:
        components.append(
            Component(
                name="frontend",
                argv=[
                    python,
                    "-m",
                    "dynamo.frontend",
                    "--http-host",
                    args.http_host,
                    "--http-port",
                    str(args.http_port),
                ],
                health_url=f"http://127.0.0.1:{args.http_port}/health",
            )
        )

    module, model_flag = ENGINES[args.engine]
    for index in range(args.workers):
        argv = [python, "-m", module, model_flag, args.model]
        if args.model_name:
            argv += ["--model-name", args.model_name]
        env: dict[str, str] = {}
        health_url = None
        if args.system_port_base:
            port = args.system_port_base + index
            env["DYN_SYSTEM_PORT"] = str(port)
            health_url = f"http://127.0.0.1:{port}/health"
            if args.engine == "mocker":
                # The mocker has no engine start-up to wait for, so it reports ready at once.
                env["DYN_SYSTEM_STARTING_HEALTH_STATUS"] = "ready"
        components.append(
            Component(
                name=f"worker-{index}",
                argv=argv + list(args.worker_args),
                env=env,
                health_url=health_url,
            )
        )
    return Plan(components=components, shared_env=shared)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Supervisor:
    """Starts components in order, watches them, and stops them in reverse order."""

    def __init__(self, plan: Plan, environ: dict[str, str], state_file: Path) -> None:
        self.plan = plan
        self.environ = environ
        self.state_file = state_file
        self.stop_requested = False

    def say(self, message: str) -> None:
        print(f"dynamo-launch: {message}", file=sys.stderr, flush=True)

    def start(self, component: Component) -> None:
        env = {**self.environ, **self.plan.shared_env, **component.env}
        self.say(f"starting {component.name}: {' '.join(component.argv)}")
        # Own session: a terminal's Ctrl-C reaches the launcher, which stops children in order.
        component.process = subprocess.Popen(component.argv, env=env, start_new_session=True)

    def wait_healthy(self, component: Component, deadline: float) -> None:
        if component.health_url is None:
            return
        while time.monotonic() < deadline and not self.stop_requested:
            if component.process is not None and component.process.poll() is not None:
                raise LaunchError(
                    f"{component.name} exited with code {component.process.returncode}"
                    " before it was healthy"
                )
            if http_ok(component.health_url):
                self.say(f"{component.name} is healthy ({component.health_url})")
                return
            time.sleep(0.2)
        if not self.stop_requested:
            raise LaunchError(
                f"{component.name} was not healthy at {component.health_url}"
                " within the ready timeout"
            )

    def write_state(self) -> None:
        state = {
            "launcher_pid": os.getpid(),
            "components": [
                {
                    "name": c.name,
                    "pid": c.process.pid if c.process else None,
                    "health_url": c.health_url,
                }
                for c in self.plan.components
            ],
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def stop_all(self) -> None:
        running = [
            (c, c.process)
            for c in reversed(self.plan.components)
            if c.process and c.process.poll() is None
        ]
        for component, process in running:
            self.say(f"stopping {component.name}")
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.say(
                    f"{component.name} ignored SIGTERM for {STOP_GRACE_SECONDS:.0f} s; killing it"
                )
                process.kill()
                process.wait()
        self.state_file.unlink(missing_ok=True)

    def request_stop(self, signum: int, _frame) -> None:
        self.say(f"received {signal.Signals(signum).name}; stopping")
        self.stop_requested = True

    def run(self, ready_timeout: float) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        try:
            deadline = time.monotonic() + ready_timeout
            for component in self.plan.components:
                if self.stop_requested:
                    return 0
                self.start(component)
                # Discovery and planes must answer before anything registers with them.
                if component.name in ("etcd", "nats"):
                    self.wait_healthy(component, deadline)
            for component in self.plan.components:
                self.wait_healthy(component, deadline)
            self.write_state()
            self.say("all components are up")
            while not self.stop_requested:
                for component in self.plan.components:
                    code = component.process.poll() if component.process else None
                    if code is not None:
                        self.say(f"{component.name} exited with code {code}; stopping the others")
                        return code or 1
                time.sleep(0.2)
            return 0
        except LaunchError as e:
            self.say(str(e))
            return 1
        finally:
            self.stop_all()


def main(argv: Sequence[str] | None = None) -> int:
    environ = dict(os.environ)
    try:
        args = parse_args(argv, environ)
    except LaunchError as e:
        print(f"dynamo-launch: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dynamo-launch-") as tmp:
        work_dir = args.work_dir or Path(tmp)
        return Supervisor(plan(args, environ, work_dir), environ, args.state_file).run(
            args.ready_timeout
        )


if __name__ == "__main__":
    sys.exit(main())
