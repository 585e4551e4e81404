from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from dynamo_images.health import check, main


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def write_state(path: Path, components: list[dict]) -> Path:
    path.write_text(json.dumps({"launcher_pid": os.getpid(), "components": components}))
    return path


def test_all_components_answering_is_healthy(tmp_path: Path, server: str) -> None:
    state = write_state(
        tmp_path / "s.json",
        [
            {"name": "frontend", "pid": os.getpid(), "health_url": f"{server}/health"},
            {"name": "etcd", "pid": os.getpid(), "health_url": None},
        ],
    )
    healthy, lines = check(state, [], timeout=2)
    assert healthy
    assert lines == [f"frontend: ok ({server}/health)", "etcd: running (no health endpoint)"]


def test_a_failing_endpoint_is_unhealthy(tmp_path: Path, server: str) -> None:
    state = write_state(
        tmp_path / "s.json",
        [{"name": "worker-0", "pid": os.getpid(), "health_url": f"{server}/notready"}],
    )
    assert check(state, [], timeout=2) == (False, [f"worker-0: unhealthy ({server}/notready)"])
    assert main(["--state-file", str(state)]) == 1


def test_a_dead_process_is_unhealthy(tmp_path: Path, server: str) -> None:
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    state = write_state(
        tmp_path / "s.json",
        [{"name": "worker-0", "pid": dead_pid, "health_url": f"{server}/health"}],
    )
    assert check(state, [], timeout=2) == (False, [f"worker-0: process {dead_pid} is gone"])


def test_explicit_urls_override_the_state_file(tmp_path: Path, server: str) -> None:
    assert main(["--state-file", str(tmp_path / "absent.json"), "--url", f"{server}/health"]) == 0
    assert main(["--state-file", str(tmp_path / "absent.json"), "--url", f"{server}/x"]) == 1


def test_without_launcher_or_urls_there_is_nothing_to_judge(tmp_path: Path) -> None:
    healthy, lines = check(tmp_path / "absent.json", [], timeout=1)
    assert healthy and "nothing to check" in lines[0]
