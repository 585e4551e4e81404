"""Running one command in a container of the image under test, on the real Docker engine."""

from __future__ import annotations

from dataclasses import dataclass

import docker


@dataclass(frozen=True)
class Ran:
    status: int
    out: str
    err: str


def run_in_image(image: str, script: str, timeout: int = 300, **kwargs) -> Ran:
    """`sh -c SCRIPT` in a new container of `image` (run options in `kwargs`); the container is
    removed, also on failure."""
    client = docker.from_env()
    container = client.containers.run(image, ["sh", "-c", script], detach=True, **kwargs)
    try:
        status = container.wait(timeout=timeout)["StatusCode"]
        out = container.logs(stdout=True, stderr=False).decode()
        err = container.logs(stdout=False, stderr=True).decode()
    finally:
        container.remove(force=True)
    return Ran(status, out, err)


def layer_ids(image: str) -> list[str]:
    return docker.from_env().images.get(image).attrs["RootFS"]["Layers"]
