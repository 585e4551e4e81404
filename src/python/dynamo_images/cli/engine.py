"""Connecting to the Docker engine, with one-line errors instead of SDK tracebacks."""

from __future__ import annotations

import os

import docker
from docker.errors import DockerException

from dynamo_images.cli.errors import EnvironmentProblem

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def one_line(text: object) -> str:
    """Collapse an error's text (SDK messages often span lines) into one line."""
    return " ".join(str(text).split())


def connect() -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (or the default socket), checked with a ping."""
    host = os.environ.get("DOCKER_HOST", DEFAULT_DOCKER_HOST)
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as error:
        raise EnvironmentProblem(
            f"cannot reach the Docker engine at {host} ({one_line(error)}); "
            "start dockerd or point DOCKER_HOST at a running engine"
        ) from error
    return client
