"""A real image registry for tests and the publish round trip: Debian's docker-registry
(Distribution 2.8, installed by ensure-debian-tools.sh), on a free loopback port, its storage
under a given folder. Standard library only. The engine pushes to loopback registries over plain
HTTP (its default insecure registries are 127.0.0.0/8)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BINARY = "docker-registry"
READY_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_registry(root: Path, *, read_only: bool = False) -> Iterator[str]:
    """Serve a registry with its storage under `root`; yields its address, localhost:PORT.
    `read_only` makes it refuse pushes (Distribution's maintenance mode)."""
    binary = shutil.which(BINARY)
    if binary is None:
        raise RuntimeError(f"{BINARY} is missing: run build-support/host/ensure-debian-tools.sh")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    maintenance = "  maintenance:\n    readonly:\n      enabled: true\n" if read_only else ""
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n{maintenance}"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (root / "registry.log").open("w")
    server = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    address = f"localhost:{port}"
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{BINARY} did not answer on {address}: "
                        + (root / "registry.log").read_text()
                    ) from None
                time.sleep(0.2)
        yield address
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def tags(address: str, repository: str) -> list[str]:
    """The tags the registry holds for `repository` (its path, without the address)."""
    import json

    with urllib.request.urlopen(f"http://{address}/v2/{repository}/tags/list", timeout=10) as reply:
        return sorted(json.load(reply).get("tags") or [])
