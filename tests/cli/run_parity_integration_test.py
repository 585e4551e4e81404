"""The printed `docker run` and the SDK call make the same container, on a real engine.

For command lines that together use every option RunPlan renders, the dry run's argv is given to
the docker CLI (as `docker create`, which takes the same options and starts nothing) and the same
plan's SDK arguments to `containers.create`; the engine's record of both containers must agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from built_images import built_image

from dynamo_images.cli import run
from dynamo_images.cli.main import make_parser

IMAGE = built_image("docker.dynamo/runtime.docker-info.json")
HOST_ENV_VARIABLE = "DYNAMO_PARITY_FROM_HOST"

# What the engine records for a container, by the option that sets it. Everything else in
# `docker inspect` is the daemon's own (ids, times, paths, defaults).
CONFIG_FIELDS = ("Cmd", "Entrypoint", "Env", "Image", "OpenStdin", "Tty", "User", "WorkingDir")
HOST_CONFIG_FIELDS = (
    "Binds",
    "CapAdd",
    "DeviceRequests",
    "GroupAdd",
    "IpcMode",
    "NetworkMode",
    "PortBindings",
    "Privileged",
    "Runtime",
    "ShmSize",
    "Ulimits",
)
# --rm: the CLI asks the daemon (AutoRemove); a real run removes the container itself after
# reading its exit code, so the SDK call leaves AutoRemove off. Checked separately below.
AUTO_REMOVE = "AutoRemove"

CASES = {
    "defaults": [],
    "every option": [
        "-it",
        "--privileged",
        "--entrypoint",
        "/bin/sh",
        "-e",
        "SET=a value with spaces",
        "-e",
        HOST_ENV_VARIABLE,
        "-e",
        "DYNAMO_PARITY_UNSET_ON_HOST",
        "-v",
        "/tmp:/data:ro",
        "-p",
        "18000:8000",
        "-p",
        "127.0.0.1:19000-19001:9000-9001/udp",
        "-p",
        "7000",
        "--ulimit",
        "nofile=1024:4096",
        "--ulimit",
        "core=0",
        "--user",
        "1000",
        "--use-nixl-gds",
        "--mount-workspace",
        "--network",
        "bridge",
    ],
    "gpus by device, no removal": [
        "--gpus",
        '"device=0,2",capabilities=compute',
        "--workdir",
        "/tmp",
        "--rm",
        "false",
        "--network",
        "none",
        "--user",
        "root",
    ],
    "no gpus": ["--gpus", "none", "--target", "runtime"],
}


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    client = docker.from_env()  # raises (fails the test) when no engine answers
    client.images.get(IMAGE)
    return client


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout root for --mount-workspace, and a home whose HF cache the plan mounts."""
    (tmp_path / "pants.toml").write_text("[GLOBAL]\n")
    return tmp_path


def engine_record(engine: docker.DockerClient, container_id: str) -> dict[str, Any]:
    attrs = engine.api.inspect_container(container_id)
    record = {f"Config.{k}": attrs["Config"].get(k) for k in CONFIG_FIELDS}
    record.update({f"HostConfig.{k}": attrs["HostConfig"].get(k) for k in HOST_CONFIG_FIELDS})
    # Not differences: the engine keys ulimits by name (the CLI sends them sorted) and reads no
    # port bindings and empty ones alike (the CLI sends {}, the SDK nothing).
    record["HostConfig.Ulimits"] = sorted(
        record["HostConfig.Ulimits"] or [], key=lambda ulimit: ulimit["Name"]
    )
    record["HostConfig.PortBindings"] = record["HostConfig.PortBindings"] or {}
    # The CLI spells capabilities CAP_-prefixed and sorted; the engine reads both spellings alike.
    record["HostConfig.CapAdd"] = sorted(
        cap if cap.startswith("CAP_") else f"CAP_{cap}" for cap in record["HostConfig.CapAdd"] or []
    )
    # The docker CLI sends unset names (`-e NAME`, NAME unset here) ahead of the others; with no
    # name given twice (as in these cases) the order carries no meaning.
    record["Config.Env"] = sorted(record["Config.Env"] or [])
    # Bind mounts have distinct destinations; the docker CLI sends them in no fixed order.
    record["HostConfig.Binds"] = sorted(record["HostConfig.Binds"] or [])
    # A device request without ids: null from the CLI, [] from the SDK.
    for request in record["HostConfig.DeviceRequests"] or []:
        request["DeviceIDs"] = request["DeviceIDs"] or []
    record["Name"] = attrs["Name"]
    record[AUTO_REMOVE] = attrs["HostConfig"].get(AUTO_REMOVE)
    return record


@pytest.fixture
def created(engine: docker.DockerClient) -> Iterator[list[str]]:
    """Ids of containers a test created; removed afterwards, pass or fail."""
    ids: list[str] = []
    yield ids
    for container_id in ids:
        try:
            engine.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass


@pytest.mark.parametrize("case", sorted(CASES))
def test_printed_command_and_sdk_call_make_the_same_container(
    engine: docker.DockerClient, checkout: Path, created: list[str], case: str
) -> None:
    name = f"dynamo-images-parity-{uuid.uuid4().hex[:12]}"
    argv = [*CASES[case], "--image", IMAGE, "--name", name, "--hf-cache", str(checkout / "hf")]
    if "--gpus" not in argv or argv[argv.index("--gpus") + 1] != "none":
        # GPU runs default to the nvidia runtime, which this engine may lack; runc accepts the
        # same GPU request at create time.
        argv += ["--runtime", "runc"]
    host_env = {**os.environ, HOST_ENV_VARIABLE: "copied from the host", "HOME": str(checkout)}
    host_env.pop("DYNAMO_PARITY_UNSET_ON_HOST", None)
    args = make_parser().parse_args(["run", *argv])
    plan = run.plan_run(args, ["echo", "it's", "$HOME"], host_env, checkout)

    printed = plan.docker_argv()
    assert printed[:2] == ["docker", "run"]
    cli = subprocess.run(
        ["docker", "create", *printed[2:]],
        capture_output=True,
        text=True,
        env=host_env,
        check=True,
    )
    created.append(cli.stdout.strip())
    by_cli = engine_record(engine, created[-1])
    engine.api.remove_container(created[-1], force=True)

    by_sdk_container = engine.containers.create(
        plan.image, list(plan.command), **plan.sdk_kwargs(host_env)
    )
    created.append(str(by_sdk_container.id))
    by_sdk = engine_record(engine, created[-1])

    assert by_cli.pop(AUTO_REMOVE) == plan.remove
    assert by_sdk.pop(AUTO_REMOVE) is False
    assert by_sdk == by_cli, json.dumps({"cli": by_cli, "sdk": by_sdk}, indent=1)
