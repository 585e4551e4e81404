"""A real `dynamo-images run` of the docker/dynamo:runtime image, checked from inside the container.

The image comes from the target (runtime_package_dependencies in BUILD, which Pants builds before
the test), never from a tag that might be missing; no Docker engine is a failure, not a skip.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from built_images import built_image

from dynamo_images.cli.main import main

IMAGE = built_image("docker.dynamo/runtime.docker-info.json")
PROBE_MARKER = "PROBE "
CAP_SYS_PTRACE_BIT = 19
STACK_BYTES = 67108864  # run.sh's fixed stack limit, left as is
# run.sh's fixed memlock=-1 and nofile=65536 need an engine allowed to raise limits that far
# (CAP_SYS_RESOURCE); an engine inside another container often is not. These explicit values fit
# under the usual 8 MiB / 20000 hard limits of such engines and differ from the defaults, so they
# show that --ulimit reaches the container; the fixed defaults have a test of their own below.
MEMLOCK_BYTES = 4 * 1024 * 1024
NOFILE_SOFT, NOFILE_HARD = 4096, 8192
IN_REACH_ULIMITS = [
    "--ulimit",
    f"memlock={MEMLOCK_BYTES}",
    "--ulimit",
    f"nofile={NOFILE_SOFT}:{NOFILE_HARD}",
]
UNPRIVILEGED_UID = "4321"
GREETING = """hello "quoted" world, it's $HOME"""

# Runs inside the container and prints one marked JSON line describing what the process sees.
PROBE = r"""
import json, os, resource, subprocess

def sh(command):
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout.strip()

status_lines = open("/proc/self/status").read().splitlines()
status = dict(line.split(":", 1) for line in status_lines if ":" in line)
mounts = [line.split() for line in open("/proc/self/mounts").read().splitlines()]
print("PROBE " + json.dumps({
    "status": {key: status[key].split() for key in ("Uid", "Gid", "Groups")},
    "cap_bounding": int(status["CapBnd"], 16),
    "id": sh("id"),
    "ulimit_a": sh("ulimit -a"),
    "ulimit": {flag: [sh("ulimit -S" + flag), sh("ulimit -H" + flag)] for flag in ("l", "s", "n")},
    "rlimits": {
        name: list(resource.getrlimit(getattr(resource, "RLIMIT_" + name.upper())))
        for name in ("memlock", "stack", "nofile")
    },
    "df_shm": sh("df -k /dev/shm"),
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "data_mount_options": [fields[3] for fields in mounts if fields[1] == "/data"],
    "greeting_file": open("/data/greeting.txt").read(),
    "hf_home_entries": sorted(os.listdir(os.environ["HF_HOME"])),
    "interfaces": sorted(os.listdir("/sys/class/net")),
}))
"""


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    client = docker.from_env()  # raises (fails the test) when no engine answers
    client.images.get(IMAGE)  # raises (fails the test) if Pants did not build it
    return client


@pytest.fixture
def container_name(engine: docker.DockerClient) -> Iterator[str]:
    """A unique container name; whatever still carries it afterwards is removed, pass or fail."""
    name = f"dynamo-images-test-{uuid.uuid4().hex[:12]}"
    yield name
    for container in engine.containers.list(all=True, filters={"name": name}):
        container.remove(force=True)


def containers_named(engine: docker.DockerClient, name: str) -> list[str | None]:
    return [c.name for c in engine.containers.list(all=True, filters={"name": name})]


def shared_dir(path: Path) -> Path:
    # pytest's tmp dirs are 0700 and root-owned; the container user is someone else.
    path.mkdir(parents=True)
    path.chmod(0o755)
    return path


def isolated(container_name: str, hf_cache: str = "none") -> list[str]:
    """`run` flags for a named test container with no GPUs or network (nor, by default, a
    Hugging Face mount)."""
    return [
        "--image",
        IMAGE,
        # An image id says nothing about its target; this one runs as the dynamo user.
        "--target",
        "runtime",
        "--name",
        container_name,
        "--gpus",
        "none",
        "--network",
        "none",
        "--hf-cache",
        hf_cache,
    ]


def test_run_applies_mounts_env_user_shm_and_ulimits(
    engine: docker.DockerClient,
    container_name: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = shared_dir(tmp_path / "data dir")
    greeting_file = data_dir / "greeting.txt"
    greeting_file.write_text(GREETING)
    greeting_file.chmod(0o644)
    hf_dir = shared_dir(tmp_path / "hf cache")
    (hf_dir / "marker").write_text("")
    monkeypatch.setenv("FROM_HOST", "copied from the host")

    exit_code = main(
        [
            "run",
            *isolated(container_name, hf_cache=str(hf_dir)),
            "--user",
            f"{UNPRIVILEGED_UID}:{UNPRIVILEGED_UID}",
            "-v",
            f"{data_dir}:/data:ro",
            "-e",
            f"GREETING={GREETING}",
            "-e",
            "FROM_HOST",
            *IN_REACH_ULIMITS,
            "--",
            "python3",
            "-c",
            PROBE,
        ]
    )
    out, err = capfd.readouterr()
    assert exit_code == 0, err
    probe_lines = [line for line in out.splitlines() if line.startswith(PROBE_MARKER)]
    assert len(probe_lines) == 1, out
    seen = json.loads(probe_lines[0].removeprefix(PROBE_MARKER))

    # --user, and group 0 added for a non-root user.
    assert seen["status"]["Uid"] == [UNPRIVILEGED_UID] * 4
    assert seen["status"]["Gid"] == [UNPRIVILEGED_UID] * 4
    assert "0" in seen["status"]["Groups"]
    assert seen["id"].startswith(f"uid={UNPRIVILEGED_UID} gid={UNPRIVILEGED_UID} groups=")
    # --cap-add CAP_SYS_PTRACE reaches the bounding set.
    assert seen["cap_bounding"] & (1 << CAP_SYS_PTRACE_BIT)

    # Ulimits as asked; the shell shows memlock and stack in KiB.
    assert seen["rlimits"] == {
        "memlock": [MEMLOCK_BYTES, MEMLOCK_BYTES],
        "stack": [STACK_BYTES, STACK_BYTES],
        "nofile": [NOFILE_SOFT, NOFILE_HARD],
    }
    assert seen["ulimit"] == {
        "l": [str(MEMLOCK_BYTES // 1024)] * 2,
        "s": [str(STACK_BYTES // 1024)] * 2,
        "n": [str(NOFILE_SOFT), str(NOFILE_HARD)],
    }
    assert (
        str(NOFILE_SOFT) in seen["ulimit_a"] and str(STACK_BYTES // 1024) in seen["ulimit_a"]
    ), seen["ulimit_a"]

    # --ipc host shares the host's /dev/shm, so the container sees the host's size there
    # (Docker ignores --shm-size=10G next to --ipc host, as it did for upstream's run.sh).
    host_shm = os.statvfs("/dev/shm")
    host_shm_kib = host_shm.f_blocks * host_shm.f_frsize // 1024
    df_fields = seen["df_shm"].splitlines()[-1].split()
    assert int(df_fields[1]) == host_shm_kib, seen["df_shm"]

    # -e with a value (spaces and quotes intact) and -e copying a host variable.
    assert seen["env"]["GREETING"] == GREETING
    assert seen["env"]["FROM_HOST"] == "copied from the host"
    # The read-only mount and the Hugging Face cache in the non-root user's home.
    assert seen["greeting_file"] == GREETING
    assert seen["data_mount_options"] and seen["data_mount_options"][0].split(",")[0] == "ro"
    assert seen["env"]["HF_HOME"] == "/home/dynamo/.cache/huggingface"
    assert seen["hf_home_entries"] == ["marker"]

    assert seen["cwd"] == "/workspace"
    assert seen["interfaces"] == ["lo"]  # --network none

    # --rm is the default: nothing is left behind.
    assert containers_named(engine, container_name) == []


def test_exit_code_is_passed_through_and_the_container_removed(
    engine: docker.DockerClient, container_name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(
        [
            "run",
            *isolated(container_name),
            *IN_REACH_ULIMITS,
            "--",
            "sh",
            "-c",
            "echo to-stderr >&2; exit 3",
        ]
    )
    _, err = capfd.readouterr()
    assert exit_code == 3
    assert "to-stderr" in err
    assert containers_named(engine, container_name) == []


def test_rm_false_keeps_the_container(
    engine: docker.DockerClient, container_name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(
        [
            "run",
            *isolated(container_name),
            "--rm",
            "false",
            *IN_REACH_ULIMITS,
            "--",
            "true",
        ]
    )
    capfd.readouterr()
    assert exit_code == 0
    assert containers_named(engine, container_name) == [container_name]
    attributes = engine.containers.get(container_name).attrs["HostConfig"]
    # What run.sh asked for, as the engine recorded it.
    assert attributes["ShmSize"] == 10 * 1024**3
    assert attributes["IpcMode"] == "host"
    assert {(u["Name"], u["Soft"], u["Hard"]) for u in attributes["Ulimits"]} == {
        ("memlock", MEMLOCK_BYTES, MEMLOCK_BYTES),
        ("stack", STACK_BYTES, STACK_BYTES),
        ("nofile", NOFILE_SOFT, NOFILE_HARD),
    }


def test_fixed_ulimits_are_applied_or_clearly_refused(
    engine: docker.DockerClient, container_name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """run.sh's fixed memlock=-1 and nofile=65536: applied where the engine may raise limits,
    otherwise refused in one line that says how to lower them; either way no container is left.
    """
    exit_code = main(
        [
            "run",
            *isolated(container_name),
            "--",
            "sh",
            "-c",
            "echo limits $(ulimit -Sl) $(ulimit -Hl) $(ulimit -Sn) $(ulimit -Hn)",
        ]
    )
    out, err = capfd.readouterr()
    if exit_code == 0:
        assert "limits unlimited unlimited 65536 65536" in out
    else:
        assert exit_code == 1
        assert err.startswith(f"dynamo-images: error: docker could not start {IMAGE}: ")
        assert err.rstrip("\n").endswith(
            "the engine cannot grant --ulimit memlock=-1 stack=67108864 nofile=65536:65536: "
            "lower them with --ulimit NAME=SOFT[:HARD]"
        )
        assert err.count("\n") == 1
    assert containers_named(engine, container_name) == []


def test_interactive_terminal(engine: docker.DockerClient, container_name: str) -> None:
    """`run -it` on a real pseudo-terminal: typed input reaches a shell in the container, its
    output and terminal size come back, and its exit code is ours."""
    rows, columns = 30, 100
    argv = [
        "run",
        "-it",
        *isolated(container_name),
        *IN_REACH_ULIMITS,
        "--",
        "sh",
    ]
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the CLI, on the pseudo-terminal now at fds 0-2
        exit_code = 127
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            # pytest's capture replaced the std streams; point them back at the terminal.
            sys.stdin = open(0, closefd=False)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            exit_code = main(argv)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exit_code)  # never return into pytest in the child
    transcript = b""
    typed = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            readable, _, _ = select.select([terminal], [], [], 0.5)
            if readable:
                try:
                    data = os.read(terminal, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                transcript += data
            if not typed and b"$ " in transcript:
                os.write(terminal, b"echo answer-$((6*7)); stty size; exit 7\n")
                typed = True
    finally:
        _, status = os.waitpid(pid, 0)
    assert b"answer-42" in transcript, transcript
    assert f"{rows} {columns}".encode() in transcript, transcript
    assert os.waitstatus_to_exitcode(status) == 7, transcript
    assert containers_named(engine, container_name) == []
