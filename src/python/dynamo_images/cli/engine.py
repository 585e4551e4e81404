"""Connecting to the Docker engine, with one-line errors instead of SDK tracebacks.

The Docker SDK is imported here, on first use, and nowhere at module level: `--dry-run` needs no
engine and no SDK, and from a checkout's root `import docker` finds this repository's `docker/`
folder (a namespace package) when the SDK is not installed.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING

from dynamo_images.cli.errors import EnvironmentProblem

if TYPE_CHECKING:
    import docker

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
SDK_MISSING = (
    "the Docker SDK for Python is not installed (pip install docker, or run the CLI through "
    "./pants run src/python/dynamo_images/cli:dynamo-images); --dry-run works without it"
)


def one_line(text: object) -> str:
    """Collapse an error's text (SDK messages often span lines) into one line."""
    return " ".join(str(text).split())


def sdk() -> ModuleType:
    """The `docker` SDK package, or a one-line EnvironmentProblem if it is not installed."""
    try:
        module = importlib.import_module("docker")
        # A folder named docker/ on sys.path imports as an empty namespace package.
        if getattr(module, "__file__", None) is None:
            raise ImportError("docker is a namespace package, not the SDK")
        for submodule in ("errors", "types", "models.containers"):
            importlib.import_module(f"docker.{submodule}")
    except ImportError as error:
        raise EnvironmentProblem(SDK_MISSING) from error
    return module


def connect() -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (or the default socket), checked with a ping."""
    docker_sdk = sdk()
    host = os.environ.get("DOCKER_HOST", DEFAULT_DOCKER_HOST)
    try:
        client = docker_sdk.from_env()
        client.ping()
    except docker_sdk.errors.DockerException as error:
        raise EnvironmentProblem(
            f"cannot reach the Docker engine at {host} ({one_line(error)}); "
            "start dockerd or point DOCKER_HOST at a running engine"
        ) from error
    return client
