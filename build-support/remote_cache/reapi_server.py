"""A local REAPI remote cache for Pants: BuildGrid serving CAS, ActionCache and ByteStream.

    reapi_server.py install   make the cached BuildGrid venv (and find redis-server)
    reapi_server.py start     start the server in the background unless it already answers
    reapi_server.py stop      stop what `start` started
    reapi_server.py status    exit 0 if the server answers, 1 if not
    reapi_server.py verify    delete stored blobs whose content does not match their digest
    reapi_server.py address   print the address Pants should use

Blobs go to disk under DIR/storage. BuildGrid 0.9.1 has no disk- or SQL-backed action cache (its
LRU action cache keeps the index in memory, emptied by a restart); the persistent backend its schema
offers without S3 is Redis, so the action cache is a Redis (append-only file under DIR/redis) that
maps action digests to ActionResult digests in the CAS. No auth: it listens on 127.0.0.1 only.

Settings (flags win over the environment): --dir / DYNAMO_REAPI_DIR (default
/var/cache/dynamo-images/reapi, machine-wide so that later runs on this machine hit), --port /
DYNAMO_REAPI_PORT (default 50151; Redis uses the next port), DYNAMO_REAPI_INSTANCE (instance name,
default dynamo-images), DYNAMO_REAPI_PYTHON (a CPython >= 3.13 for the venv). Runs on any python3.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
DEFAULT_DIR = "/var/cache/dynamo-images/reapi"
DEFAULT_PORT = 50151
DEFAULT_INSTANCE = "dynamo-images"
# pip must not see this machine's site-wide config (constraints, find-links): see README.
PIP_ENV_DROP = ("PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV")

# Run by the venv's python: GetCapabilities must answer and the action cache must reach Redis (a
# lookup of an unknown digest answers NOT_FOUND, not UNAVAILABLE).
PROBE = """
import hashlib, sys, grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as rg
address, instance = sys.argv[1:3]
with grpc.insecure_channel(address) as channel:
    rg.CapabilitiesStub(channel).GetCapabilities(
        re.GetCapabilitiesRequest(instance_name=instance), timeout=3)
    digest = re.Digest(hash=hashlib.sha256(b"reapi-probe").hexdigest(), size_bytes=11)
    try:
        rg.ActionCacheStub(channel).GetActionResult(
            re.GetActionResultRequest(instance_name=instance, action_digest=digest), timeout=3)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise
"""

BUILDGRID_CONFIG = """\
# Written by build-support/remote_cache/reapi_server.py; edits are overwritten on start.
# Pants sends up to 128 concurrent RPCs per kind: queue them instead of refusing with
# RESOURCE_EXHAUSTED (BuildGrid's default limit is the thread count).
thread-pool-size: 16
maximum-concurrent-rpcs: 1024
server:
  - !channel
    address: 127.0.0.1:{port}
    insecure-mode: true
authorization:
  method: none
connections:
  - !redis-connection &redis
    host: 127.0.0.1
    port: {redis_port}
storages:
  - !disk-storage &cas
    path: {storage}
caches:
  # Keys: action digests; values: the digest of the ActionResult, stored in the CAS. An entry
  # whose output blobs are gone from the CAS is dropped and reported as a miss.
  - !redis-action-cache &ac
    storage: *cas
    redis: *redis
    allow-updates: true
    # A failed (maybe flaky) action must run again rather than be served from the cache.
    cache-failed-actions: false
    entry-type: action-result-digest
instances:
  - name: {instance}
    services:
      - !action-cache
        cache: *ac
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
"""

REDIS_CONFIG = """\
# Written by build-support/remote_cache/reapi_server.py; edits are overwritten on start.
bind 127.0.0.1
port {redis_port}
protected-mode yes
daemonize no
dir {redis_dir}
# The append-only file is what makes the action cache survive restarts; fsync once a second.
appendonly yes
appendfsync everysec
save ""
"""


class ServerError(Exception):
    """A problem the user must fix; printed as one line."""


def say(message: str) -> None:
    print(f"reapi-server: {message}", file=sys.stderr)


class Server:
    def __init__(self, root: Path, port: int, instance: str) -> None:
        self.root, self.port, self.instance = root, port, instance
        self.redis_port = port + 1
        self.run = root / "run"
        self.address = f"grpc://127.0.0.1:{port}"

    # -- the venv ----------------------------------------------------------------------------

    @staticmethod
    def venv() -> Path:
        # Outside the checkout, keyed by the pinned set: every clone on the machine shares it.
        cache = os.environ.get("DYNAMO_IMAGES_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dynamo-images"
        )
        text = REQUIREMENTS.read_text()
        match = re.search(r"^buildgrid(?:\[[^]]*\])?==(\S+)", text, re.M)
        if not match:
            raise ServerError(f"{REQUIREMENTS} pins no buildgrid version")
        key = hashlib.sha256(text.encode()).hexdigest()[:12]
        return Path(cache) / f"buildgrid-{match.group(1)}-{key}"

    @staticmethod
    def find_python() -> str:
        """A CPython >= 3.13 (BuildGrid 0.9.1 needs it; on 3.11 pip resolves 0.4.4)."""
        candidates = [os.environ.get("DYNAMO_REAPI_PYTHON", "")]
        pyenv_root = Path(os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv"))
        candidates += sorted(map(str, pyenv_root.glob("versions/3.1[3-9]*/bin/python3")))
        candidates += [shutil.which(n) or "" for n in ("python3.14", "python3.13", "python3")]
        for candidate in filter(None, candidates):
            try:
                probe = subprocess.run(
                    [candidate, "-c", "import sys, venv; print(sys.version_info >= (3, 13))"],
                    capture_output=True,
                    text=True,
                )
            except OSError:  # not there, or not executable
                continue
            if probe.stdout.strip() == "True":
                return candidate
        raise ServerError(
            "BuildGrid needs CPython >= 3.13: set DYNAMO_REAPI_PYTHON, or install it "
            "(e.g. `pyenv install 3.13`)"
        )

    def install(self) -> Path:
        venv = self.venv()
        if (venv / ".ready").exists():
            return venv
        venv.parent.mkdir(parents=True, exist_ok=True)
        with locked(venv.parent / f".{venv.name}.lock"):
            if (venv / ".ready").exists():  # another caller installed it meanwhile
                return venv
            python = self.find_python()
            say(f"installing BuildGrid into {venv} (once)")
            shutil.rmtree(venv, ignore_errors=True)
            env = {k: v for k, v in os.environ.items() if k not in PIP_ENV_DROP}
            env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
            try:
                # Built in place: a venv's scripts embed its absolute path.
                run([python, "-m", "venv", str(venv)])
                pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--no-input"]
                run([*pip, "-r", str(REQUIREMENTS)], env=env)
            except BaseException:
                shutil.rmtree(venv, ignore_errors=True)  # never leave a half-made venv behind
                raise
            (venv / ".ready").write_text(python + "\n")
        return venv

    @staticmethod
    def redis_server() -> str:
        found = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
        )
        if found:
            return found
        if not Path("/etc/debian_version").exists() or os.geteuid() != 0:
            raise ServerError("redis-server is missing (Debian: apt-get install redis-server)")
        say("installing Debian's redis-server")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"], env=env)
        return "/usr/bin/redis-server"

    # -- processes ---------------------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        """The pid in run/NAME.pid if that process is alive and still ours."""
        try:
            pid, started = (self.run / f"{name}.pid").read_text().split()
            # A recycled pid has another start time (Redis rewrites its command line).
            return int(pid) if start_time(int(pid)) == started else None
        except (OSError, ValueError):
            return None

    def answers(self) -> bool:
        venv = self.venv()
        if not (venv / ".ready").exists():
            return False
        probe = [str(venv / "bin" / "python"), "-c", PROBE, self.address[7:], self.instance]
        return subprocess.run(probe, capture_output=True).returncode == 0

    def spawn(self, name: str, argv: list[str]) -> int:
        log = open(self.run / f"{name}.log", "ab")
        # A new session: the server outlives the caller's process group (CI steps, Ctrl-C).
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        (self.run / f"{name}.pid").write_text(f"{proc.pid} {start_time(proc.pid)}\n")
        return proc.pid

    def wait_for(self, name: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if self.pid(name) is None:
                raise ServerError(f"{name} exited while starting; {self.log_tail(name)}")
            time.sleep(0.5)
        raise ServerError(f"{name} did not answer within {timeout:.0f} s; {self.log_tail(name)}")

    def log_tail(self, name: str) -> str:
        path = self.run / f"{name}.log"
        try:
            lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            lines = []
        return f"last lines of {path}: " + " | ".join(lines[-3:])

    def redis_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> str:
        self.run.mkdir(parents=True, exist_ok=True)
        with locked(self.run / "lock"):
            if self.pid("buildgrid") and self.answers():
                return "running"
            venv, redis = self.install(), self.redis_server()
            self._stop()  # leftovers of a crashed or half-started server
            storage, redis_dir = self.root / "storage", self.root / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            values = dict(
                port=self.port,
                redis_port=self.redis_port,
                storage=storage,
                redis_dir=redis_dir,
                instance=self.instance,
            )
            (self.run / "redis.conf").write_text(REDIS_CONFIG.format(**values))
            (self.run / "buildgrid.yml").write_text(BUILDGRID_CONFIG.format(**values))
            self.spawn("redis", [redis, str(self.run / "redis.conf")])
            self.wait_for("redis", self.redis_answers, 30)
            bgd = [str(venv / "bin" / "bgd"), "server", "start", str(self.run / "buildgrid.yml")]
            self.spawn("buildgrid", bgd)
            # Importing BuildGrid takes ~10 s on a busy 2-core machine.
            self.wait_for("buildgrid", self.answers, 120)
            return "started"

    def verify(self) -> tuple[int, int]:
        """Check every stored blob against the sha256 it is named by; delete those that differ.

        Pants already refuses a blob that does not match its digest (the process then runs
        locally), but the server keeps serving it and never takes a good copy (a blob it has is
        not uploaded again): deleting it lets the next run store a good one. Safe while serving:
        the server writes a blob whole to a temporary file and then links it into place.
        """
        checked = deleted = 0
        for blob in (self.root / "storage" / "cas" / "objects").glob("*/*"):
            digest = hashlib.sha256()
            with open(blob, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            checked += 1
            if blob.parent.name + blob.name != digest.hexdigest():
                blob.unlink()
                deleted += 1
        return checked, deleted

    def stop(self) -> bool:
        self.run.mkdir(parents=True, exist_ok=True)
        with locked(self.run / "lock"):
            return self._stop()

    def _stop(self) -> bool:
        stopped = False
        # BuildGrid first, so that it never runs without its action cache.
        for name in ("buildgrid", "redis"):
            pid = self.pid(name)
            if pid is None:
                continue
            stopped = True
            # SIGTERM: BuildGrid drains its RPCs; Redis fsyncs its append-only file.
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while self.pid(name) == pid and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.pid(name) == pid:
                say(f"{name} (pid {pid}) ignored SIGTERM for 30 s; killing it")
                os.kill(pid, signal.SIGKILL)
            (self.run / f"{name}.pid").unlink(missing_ok=True)
        return stopped


def start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # exited, not yet reaped by its parent (us, while starting it)
        raise ProcessLookupError(pid)
    return fields[19]


@contextlib.contextmanager
def locked(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def run(cmd: list[str], **kw) -> None:
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if result.returncode != 0:
        sys.stderr.write(result.stdout)
        raise ServerError(f"command failed ({result.returncode}): {' '.join(cmd)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = ["install", "start", "stop", "status", "verify", "address"]
    parser.add_argument("command", choices=commands)
    parser.add_argument("--dir", default=os.environ.get("DYNAMO_REAPI_DIR") or DEFAULT_DIR)
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("DYNAMO_REAPI_PORT") or DEFAULT_PORT)
    )
    args = parser.parse_args(argv)
    instance = os.environ.get("DYNAMO_REAPI_INSTANCE") or DEFAULT_INSTANCE
    server = Server(Path(args.dir).resolve(), args.port, instance)
    try:
        if args.command == "install":
            say(f"BuildGrid venv: {server.install()}; redis-server: {server.redis_server()}")
        elif args.command == "start":
            state = server.start()
            say(f"{state} at {server.address} (instance {instance}, storage {server.root})")
            print(state)  # .ci/run stops the server only if it started it
        elif args.command == "stop":
            say("stopped" if server.stop() else "not running")
        elif args.command == "verify":
            checked, deleted = server.verify()
            say(f"checked {checked} blobs in {server.root / 'storage'}; deleted {deleted} corrupt")
        elif args.command == "status":
            up = server.answers()
            say(f"{'answers' if up else 'does not answer'} at {server.address}")
            return 0 if up else 1
        else:
            print(server.address)
    except (ServerError, OSError) as e:
        say(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
