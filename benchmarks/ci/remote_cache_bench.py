"""CI with a REAPI remote cache: benchmark and demonstrations (README: CI and the remote cache).

    python3 benchmarks/ci/remote_cache_bench.py bench    cold vs warm remote cache, printed figures
    python3 benchmarks/ci/remote_cache_bench.py keys     hits in a clone elsewhere (HOME, PATH)
    python3 benchmarks/ci/remote_cache_bench.py outage   server absent / killed mid-run: runs pass
    python3 benchmarks/ci/remote_cache_bench.py corrupt  corrupted blobs are never used
    python3 benchmarks/ci/remote_cache_bench.py changed  what changed-only CI would build

Every run is a fresh clone of --ref (default HEAD: commit what you want measured) under --workdir,
with its own HOME, so Pants' local caches (store, named caches, pantsd) start empty and the user's
are untouched; the environment is CI's (build-support/remote_cache/ci-env.sh). The remote cache is
a BuildGrid of the benchmark's own (--port, storage under --workdir), never the machine's CI cache.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COUNTERS = (
    "remote_cache_requests",
    "remote_cache_requests_cached",
    "remote_cache_requests_uncached",
    "remote_cache_read_errors",
    "remote_cache_write_successes",
    "remote_cache_write_errors",
    "remote_cache_speculation_local_completed_first",
    "local_execution_requests",
)
# A small, representative slice: a PEX-based Python test (with the local wheels find-links), a Go
# test (standard library compile) and a PEX package.
SLICE = [
    "test",
    "src/python/dynamo_images/health_test.py",
    "src/go/epp/internal/config::",
    "package",
    "docker/base:dev-tools",
]


@dataclass
class Result:
    label: str
    seconds: float = 0.0
    rc: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, output: str, seconds: float, rc: int) -> None:
        self.seconds += seconds
        self.rc = self.rc or rc
        for name in COUNTERS:
            for value in re.findall(rf"^\s+{name}: (\d+)$", output, re.M):
                self.counters[name] = self.counters.get(name, 0) + int(value)
        self.misses += re.findall(r'remote cache miss for: "([^"]*)"', output)
        self.warnings += re.findall(r"\[WARN\] (Failed to (?:read|write).*)", output)

    def get(self, name: str) -> int:
        return self.counters.get(name, 0)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.work = Path(args.workdir).resolve()
        self.port = args.port
        self.sha = git("rev-parse", args.ref)
        self.verbose = args.verbose
        self.work.mkdir(parents=True, exist_ok=True)

    # -- the benchmark's own server ----------------------------------------------------------

    def server(self, command: str, port: int | None = None) -> None:
        port = port or self.port
        script = REPO / "build-support/remote_cache/reapi_server.py"
        cmd = [sys.executable, str(script), command, "--dir", str(self.work / "reapi")]
        subprocess.run([*cmd, "--port", str(port)], check=True, stdout=subprocess.DEVNULL)

    def fresh_server(self) -> None:
        self.server("stop")
        shutil.rmtree(self.work / "reapi", ignore_errors=True)
        self.server("start")

    @property
    def address(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    # -- clones and Pants runs ---------------------------------------------------------------

    def clone(self, name: str) -> Path:
        """A fresh clone of the measured commit, with an empty HOME beside it."""
        path = self.work / name / "repo"
        self.forget(path.parent)
        shutil.rmtree(path.parent, ignore_errors=True)
        path.parent.mkdir(parents=True)
        subprocess.run(["git", "clone", "-q", str(REPO), str(path)], check=True)
        subprocess.run(["git", "-C", str(path), "checkout", "-q", self.sha], check=True)
        (path.parent / "home").mkdir()
        return path

    def forget(self, folder: Path) -> None:
        """Stop the pantsd of clones under FOLDER and delete them with their HOME (not the logs)."""
        for pidfile in folder.glob("**/repo/.pids/*/pantsd/pid"):
            with_pid(pidfile, signal.SIGTERM)
        for tree in [*folder.glob("**/repo"), *folder.glob("**/home")]:
            shutil.rmtree(tree, ignore_errors=True)

    def pants(
        self,
        repo: Path,
        result: Result,
        *args: str,
        address: str | None = None,
        path: str | None = None,
        background: bool = False,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PANTS_", "DYNAMO_"))}
        env.update(HOME=str(repo.parent / "home"), DYNAMO_REAPI_ADDRESS=address or self.address)
        if path:
            env["PATH"] = path
        # CI's environment: the same script .ci/run sources.
        argv = ["bash", "-c", 'source build-support/remote_cache/ci-env.sh && exec ./pants "$@"']
        argv += ["pants", *args]
        log = repo.parent / f"pants-{len(list(repo.parent.glob('pants-*.log')))}.log"
        out = open(log, "w")
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)

        def finish() -> int:
            rc = proc.wait()
            out.close()
            text = log.read_text(errors="replace")
            result.add(text, time.monotonic() - started, rc)
            if rc or self.verbose:
                print(f"    ./pants {' '.join(args)} -> rc {rc}, log {log}")
            return rc

        return finish if background else finish()

    def images(self, repo: Path, result: Result | None = None) -> list[str]:
        """The docker_image targets, as .ci/run finds them."""
        query = ["--filter-target-type=docker_image", "list", "::"]
        self.pants(repo, result or Result("list"), *query)
        return addresses(sorted(repo.parent.glob("pants-*.log"))[-1])

    # -- the demonstrations ------------------------------------------------------------------

    def bench(self, restart: bool, warm_runs: int = 1, reuse: bool = False) -> int:
        """Cold (empty remote cache) vs warm (filled by the cold run), each on a fresh clone."""
        if reuse:  # the remote cache of an earlier `bench`: warm runs only
            self.server("start")
        else:
            self.fresh_server()
        results = []
        phases = ["cold"] * (not reuse) + [
            f"warm{i + 1}" if warm_runs > 1 else "warm" for i in range(warm_runs)
        ]
        for phase in phases:
            if phase.startswith("warm") and restart:
                # The warm run also proves that the action cache survives a server restart.
                self.server("stop")
                self.server("start")
            repo = self.clone(phase)
            result = Result(phase)
            # What .ci/run does after lint: find the images, test everything, package the images.
            images = self.images(repo, result)
            print(f"{phase}: fresh clone {repo}, empty local caches; images: {' '.join(images)}")
            self.pants(repo, result, "test", "::")
            self.pants(repo, result, "package", *images)
            results.append(result)
            self.forget(repo.parent)
        self.server("stop")
        print_table(results)
        if not reuse:
            cold, warm = results[0], min(results[1:], key=lambda r: r.seconds)
            print(
                f"\ncold/warm wall time: {cold.seconds / warm.seconds:.1f}x "
                f"({cold.seconds:.0f} s / {warm.seconds:.0f} s; goal >= 5x)"
            )
        print(
            "Both include Pants start-up (fresh pantsd) and `docker build` of every image: Pants\n"
            "never caches docker builds; Docker's layer cache on this engine serves both runs\n"
            "alike. docker/base:rootfs (debootstrap) and every PEX, Go compile and test result\n"
            "are Pants processes that the warm run takes from the remote cache."
        )
        return max(r.rc for r in results)

    def keys(self) -> int:
        """The same goals from a clone in another directory, under another HOME and PATH."""
        self.fresh_server()
        first = self.clone("keys-a")
        fill = Result("first clone")
        self.pants(first, fill, *SLICE)
        # Another directory (and depth), another HOME (empty), PATH reordered with an extra entry.
        self.forget(self.work / "keys-b")
        second = self.clone("keys-b/elsewhere/deeper")
        entries = os.environ.get("PATH", "").split(os.pathsep)
        path = os.pathsep.join([str(second.parent / "bin"), *reversed(entries)])
        # The pex CLI from another file:// URL too (./pants puts it under DYNAMO_IMAGES_CACHE).
        stable = os.environ.get("DYNAMO_CI_STABLE_ROOT", "/opt/dynamo-images")
        tools = Path(os.environ.get("DYNAMO_IMAGES_CACHE") or f"{stable}/launcher") / "tools"
        elsewhere = second.parent / "pex-elsewhere"
        elsewhere.mkdir()
        for pex in tools.glob("pex-*"):
            shutil.copy2(pex, elsewhere)
        url = f"--pex-cli-url-template=file://{elsewhere}/pex-{{version}}"
        check = Result("second clone")
        self.pants(second, check, "-ldebug", url, *SLICE, path=path)
        self.forget(first.parent)
        self.forget(self.work / "keys-b")
        self.server("stop")
        print(f"first clone {first}, HOME {first.parent / 'home'}")
        print(f"second clone {second}, HOME {second.parent / 'home'}, PATH={path}")
        print(f"second clone's pex CLI URL: {url.split('=', 1)[1]}")
        print_table([fill, check])
        # A process whose local run finished before its cache lookup answered is written again,
        # not missed; a miss means a key that differs between the two clones.
        print(f"misses in the second clone: {len(check.misses)}")
        for miss in sorted(set(check.misses)):
            print(f"  {miss}")
        return fill.rc or check.rc or (1 if check.misses else 0)

    def outage(self) -> int:
        """No server at all; then a server killed (SIGKILL) in the middle of a run."""
        results = []
        repo = self.clone("outage-absent")
        absent = Result("no server")
        # Nothing listens on this port.
        self.pants(repo, absent, *SLICE, address=f"grpc://127.0.0.1:{self.port + 7}")
        self.forget(repo.parent)
        results.append(absent)

        self.fresh_server()
        repo = self.clone("outage-fill")
        fill = Result("fill")
        self.pants(repo, fill, *SLICE)
        self.forget(repo.parent)
        results.append(fill)

        repo = self.clone("outage-killed")
        killed = Result("killed mid-run")
        started = time.monotonic()
        finish = self.pants(repo, killed, *SLICE, background=True)
        # Like a crash: SIGKILL once the run has been served some hits (Redis counts lookups that
        # found an entry), with many still to come.
        while redis_hits(self.port + 1) < 20 and time.monotonic() - started < 300:
            time.sleep(0.2)
        for name in ("buildgrid", "redis"):
            with_pid(self.work / "reapi" / "run" / f"{name}.pid", signal.SIGKILL)
        print(f"killed the server {time.monotonic() - started:.0f} s into the run, after 20 hits")
        finish()
        self.forget(repo.parent)
        self.server("stop")  # clears the pid files of the killed server
        results.append(killed)
        print_table(results)
        for result in (absent, killed):
            print(f"{result.label}: rc {result.rc}; warnings: {len(result.warnings)}")
            for warning in result.warnings[:4]:
                print(f"  {warning[:150]}")
        return absent.rc or fill.rc or killed.rc

    def corrupt(self) -> int:
        """Flip one byte in every large blob on the server's disk: a later run must not use them."""
        self.fresh_server()
        repo = self.clone("corrupt-fill")
        fill = Result("fill")
        self.pants(repo, fill, *SLICE)
        self.forget(repo.parent)
        # Outputs (PEXes, archives) are large; the small blobs are mostly protobuf messages
        # (ActionResult, Directory) that the server itself parses.
        blobs = [p for p in (self.work / "reapi/storage/cas/objects").glob("*/*")]
        large = [p for p in blobs if p.stat().st_size >= 64 * 1024]
        for blob in large:
            with open(blob, "r+b") as f:
                f.seek(blob.stat().st_size // 2)
                byte = f.read(1)
                f.seek(-1, os.SEEK_CUR)
                f.write(bytes([byte[0] ^ 0xFF]))
        print(f"corrupted {len(large)} of {len(blobs)} blobs (each >= 64 KiB, one byte flipped)")
        repo = self.clone("corrupt-use")
        after = Result("after corruption")
        self.pants(repo, after, "-ldebug", *SLICE)
        text = "\n".join(p.read_text(errors="replace") for p in repo.parent.glob("pants-*.log"))
        # Pants' words when a downloaded blob does not hash to its digest.
        mismatches = re.findall(r"\[WARN\][^\n]*gave wrong digest[^\n]*", text)
        self.forget(repo.parent)
        # The corrupt blobs stay on the server (a blob it has is never uploaded again): remove them.
        self.server("verify")
        self.server("stop")
        print_table([fill, after])
        print(f"blobs refused for a wrong digest in the second run: {len(mismatches)}")
        for line in mismatches[:2]:
            print(f"  {line.strip()[:220]}")
        return fill.rc or after.rc

    def changed(self) -> int:
        """Which images changed-only CI builds for one change at a time (throwaway commits)."""
        self.server("start")  # dependency inference runs processes: let them hit if they can
        repo = self.clone("changed")
        git_c = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@x"]
        cases = [
            ("a framework's lockfile", "3rdparty/python/default.lock", "\n"),
            ("the shared base", "docker/base/runtime-packages.txt", "# changed\n"),
            ("the shared base", "docker/base/Dockerfile", "# changed\n"),
            ("Go code of the endpoint picker", "src/go/epp/internal/config/config.go", "// x\n"),
        ]
        rc = 0
        since = ["--changed-since=HEAD~1", "--changed-dependents=transitive"]
        for label, changed_file, text in cases:
            # Appended blank or comment lines: a change of content that leaves the file valid.
            with open(repo / changed_file, "a") as f:
                f.write(text)
            subprocess.run([*git_c, "commit", "-qam", f"change {changed_file}"], check=True)
            result = Result(label)
            self.pants(repo, result, *since, "--filter-target-type=docker_image", "list")
            images = addresses(sorted(repo.parent.glob("pants-*.log"))[-1])
            self.pants(repo, result, *since, "list")
            targets = addresses(sorted(repo.parent.glob("pants-*.log"))[-1])
            rc = rc or result.rc
            print(f"change to {label} ({changed_file}):")
            print(f"  images CI builds: {' '.join(images) or '(none)'}")
            print(f"  targets CI tests/packages (changed + transitive dependees): {len(targets)}")
            subprocess.run([*git_c, "reset", "-q", "--hard", "HEAD~1"], check=True)
        self.forget(repo.parent)
        return rc


def addresses(log: Path) -> list[str]:
    """The target addresses a `list` or `filter` run printed (one per line)."""
    text = log.read_text(errors="replace")
    pattern = r"^(?!\d\d:\d\d:)((?://)?(?:[\w.@+-]+(?:/[\w.@+-]+)*)?(?::[\w.@+-]+|#\S+)?)$"
    return sorted(set(filter(None, re.findall(pattern, text, re.M))))


def redis_hits(port: int) -> int:
    """keyspace_hits of the Redis behind the benchmark server: action cache lookups that hit."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"INFO stats\r\n")
            time.sleep(0.1)
            match = re.search(rb"keyspace_hits:(\d+)", s.recv(65536))
            return int(match.group(1)) if match else 0
    except OSError:
        return 0


def with_pid(pidfile: Path, sig: signal.Signals) -> None:
    try:
        os.kill(int(pidfile.read_text().split()[0]), sig)
    except (OSError, ValueError, IndexError):
        pass


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def print_table(results: list[Result]) -> None:
    header = f"{'run':<18}{'wall s':>8}{'rc':>4}{'requests':>10}{'hits':>7}{'misses':>8}"
    header += f"{'local runs':>12}{'writes':>8}{'errors r/w':>12}"
    print("\n" + header)
    for r in results:
        errors = f"{r.get('remote_cache_read_errors')}/{r.get('remote_cache_write_errors')}"
        print(
            f"{r.label:<18}{r.seconds:>8.0f}{r.rc:>4}{r.get('remote_cache_requests'):>10}"
            f"{r.get('remote_cache_requests_cached'):>7}{r.get('remote_cache_requests_uncached'):>8}"
            f"{r.get('local_execution_requests'):>12}{r.get('remote_cache_write_successes'):>8}"
            f"{errors:>12}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("demo", choices=["bench", "keys", "outage", "corrupt", "changed", "all"])
    parser.add_argument("--ref", default="HEAD", help="commit to measure (default HEAD)")
    parser.add_argument("--workdir", default="/tmp/dynamo-ci-bench")
    parser.add_argument("--port", type=int, default=50181, help="the benchmark server's port")
    parser.add_argument(
        "--no-restart", action="store_true", help="bench: keep the server up between runs"
    )
    parser.add_argument("--warm-runs", type=int, default=1, help="bench: warm runs after cold")
    parser.add_argument(
        "--reuse-cache", action="store_true", help="bench: skip cold, reuse the last bench's cache"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every Pants log path")
    args = parser.parse_args()
    bench = Bench(args)
    print(f"measuring {bench.sha[:12]} under {bench.work}")
    demos = ["keys", "outage", "corrupt", "changed", "bench"] if args.demo == "all" else [args.demo]
    rc = 0
    try:
        for demo in demos:
            print(f"\n== {demo}: {getattr(Bench, demo).__doc__}")
            run = (
                (lambda: bench.bench(not args.no_restart, args.warm_runs, args.reuse_cache))
                if demo == "bench"
                else None
            )
            rc = (run or getattr(bench, demo))() or rc
    finally:
        bench.server("stop")
    return rc


if __name__ == "__main__":
    sys.exit(main())
