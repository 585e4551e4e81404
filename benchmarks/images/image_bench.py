"""Benchmark: docker/<framework>:runtime built by Pants versus built the way upstream builds.

Side by side in one run, on the same base image (dynamo-images/base:runtime):
  ours      ./pants package docker/<framework>:runtime  (framework_image(): venv layer slots,
            our code, labels last)
  baseline  docker build of a Dockerfile that COPYs the source tree, then builds and pip-installs
            the first-party wheel, Dynamo and the engine from a local wheelhouse inside
            `docker build` (upstream's pattern, minus its network: the wheelhouse holds the locked
            wheels, hard-linked from pex's download cache where it has them)
Scenarios: cold (no Docker build cache and no previous image, so the shared base image is rebuilt
on both sides; PEXes rebuilt), no-op rebuild, one-line first-party change.
Prints wall seconds, the ratio baseline/ours, and the bytes of new image layers per scenario.

Run from the repo root, as root, with the Docker engine up:
    python3 benchmarks/images/image_bench.py --framework vllm     # or sglang, dynamo
One side runs at a time and each side's image and build cache are removed before the other's cold
build (an engine image is ~10 GB and its build cache ~20 GB more); our image is rebuilt at the end.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASELINE_IMAGE = "dynamo-bench/baseline-runtime:latest"
BASE_IMAGE = "dynamo-images/base:runtime"
CHANGED_FILE = "src/python/dynamo_images/launch.py"
FIRST_PARTY = ["__init__.py", "launch.py", "health.py", "tiny_model.py"]
LOCAL_WHEELS = REPO / "3rdparty/python/wheels"
DOCKER = "/usr/bin/docker"
# Where pex keeps the wheels it downloaded (Pants' named cache, or pex's default root).
PEX_DOWNLOADS = [
    Path.home() / ".pex/downloads",
    Path.home() / ".cache/pants/named_caches/pex_root/downloads",
]


@dataclass(frozen=True)
class Framework:
    lock: str
    # What the baseline pip-installs besides our code (as the image does); None: the requirements
    # the engine lock was generated from (its metadata header), i.e. 3rdparty/python/<engine>-...
    explicit_requirements: str | None = None

    @property
    def requirements(self) -> str:
        if self.explicit_requirements is not None:
            return self.explicit_requirements
        header = [
            line[2:]
            for line in (REPO / self.lock).read_text().splitlines()
            if line.startswith("//")
        ]
        start = next(i for i, line in enumerate(header) if "BEGIN PANTS LOCKFILE" in line)
        end = next(i for i, line in enumerate(header) if "END PANTS LOCKFILE" in line)
        metadata = json.loads("\n".join(header[start + 1 : end]))
        return " ".join(shlex.quote(r) for r in metadata["generated_with_requirements"])


FRAMEWORKS = {
    # The image installs Dynamo from the default resolve, whose lock also holds our dev tools.
    "dynamo": Framework("3rdparty/python/default.lock", "ai-dynamo==1.6.1 tokenizers"),
    "vllm": Framework("3rdparty/python/vllm.lock"),
    "sglang": Framework("3rdparty/python/sglang.lock"),
}

# The wheelhouse is bind-mounted, as upstream mounts its caches, so that it is not a layer.
BASELINE_DOCKERFILE = """\
FROM {base}
USER root
COPY src /src
RUN --mount=type=bind,source=wheelhouse,target=/wheelhouse \\
    python3.11 -m venv --without-pip /opt/dynamo/venv \\
 && /opt/dynamo/venv/bin/python $(ls /wheelhouse/pip-*.whl)/pip install --quiet --no-index \\
      --find-links /wheelhouse /src {requirements}
ENV PATH=/opt/dynamo/venv/bin:$PATH
USER dynamo
"""
BASELINE_PYPROJECT = """\
[build-system]
requires = ["setuptools", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "dynamo-images"
version = "0.0.0"

[tool.setuptools]
packages = ["dynamo_images"]
"""


@dataclass
class Result:
    seconds: float
    new_layer_bytes: int


def sh(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run quietly; on failure show what the command printed, then stop."""
    result = subprocess.run(
        cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-5000:])
        raise SystemExit(f"benchmark: {' '.join(cmd)} failed with exit code {result.returncode}")
    return result


def layer_sizes(image: str) -> dict[str, int]:
    """diff_id -> size of each layer, from the engine's image history (the layer report's code).
    Not `docker save`: streaming a 10 GB image evicts the page cache, and the next build then
    reads its 4 GB build context from disk again (measured: a no-op took 23 s instead of 1.4 s)."""
    import docker  # the Docker SDK, as the CLI uses it

    sys.path.insert(0, str(REPO / "src/python"))
    from dynamo_images.cli.layers import layer_report

    return {layer.diff_id: layer.size for layer in layer_report(docker.from_env(), image).layers}


def image_layers(image: str) -> list[str]:
    out = subprocess.run(
        [DOCKER, "image", "inspect", "-f", "{{json .RootFS.Layers}}", image],
        text=True,
        capture_output=True,
    )
    return json.loads(out.stdout) if out.returncode == 0 else []


def timed_build(build: Callable[[], None], image: str) -> Result:
    before = set(image_layers(image))
    start = time.monotonic()
    build()
    seconds = time.monotonic() - start
    sizes = layer_sizes(image)
    return Result(seconds, sum(size for diff_id, size in sizes.items() if diff_id not in before))


def prune_build_cache() -> None:
    sh([DOCKER, "builder", "prune", "--all", "--force"])


def remove_image(image: str) -> None:
    subprocess.run([DOCKER, "rmi", "-f", image], capture_output=True)
    sh([DOCKER, "image", "prune", "--force"])


class Ours:
    def __init__(self, framework: str) -> None:
        self.target = f"docker/{framework}:runtime"
        self.image = f"dynamo:latest-{framework}-runtime"
        # pants.toml passes this to pex processes: a value never used before makes the cold
        # build's PEXes miss every cache. Every later build keeps it, so that the no-op and
        # one-line builds differ from the one before them only by what the scenario changes.
        self.env = {**os.environ, "DYNAMO_BENCH_NONCE": uuid.uuid4().hex}

    def build(self, cold: bool = False) -> None:
        """Cold needs nothing more here: the build cache was pruned and the nonce is new."""
        sh(["./pants", "package", self.target], cwd=REPO, env=self.env)

    def change_one_line(self, marker: str) -> None:
        path = REPO / CHANGED_FILE
        path.write_text(path.read_text() + f"_BENCHMARK_MARKER = {marker!r}\n")


class Baseline:
    def __init__(self, context: Path, framework: Framework) -> None:
        self.context = context
        self.framework = framework

    def prepare(self) -> None:
        """Wheelhouse of every locked wheel (plus pip and the build backend) and the source tree.
        Wheels pex already downloaded are hard-linked (no second copy on disk); the rest come from
        PyPI."""
        wheelhouse = self.context / "wheelhouse"
        wheelhouse.mkdir(parents=True)
        body = "\n".join(
            line
            for line in (REPO / self.framework.lock).read_text().splitlines()
            if not line.startswith("//")
        )
        cached = {
            path.name: path
            for root in PEX_DOWNLOADS
            if root.is_dir()
            for path in root.rglob("*.whl")
        }
        pins = []
        for locked in json.loads(body)["locked_resolves"][0]["locked_requirements"]:
            names = [a["url"].rsplit("/", 1)[-1] for a in locked["artifacts"]]
            # pex may have fetched several of a project's wheels (other platforms, for the lock):
            # link them all, pip picks the one for this interpreter.
            found = [cached[name] for name in names if name in cached]
            for path in found:
                os.link(path, wheelhouse / path.name)
            if not found:
                pins.append(f"{locked['project_name']}=={locked['version']}")
        reqs = self.context / "requirements.txt"
        reqs.write_text("\n".join([*pins, "pip==23.1.2", "setuptools", "wheel"]) + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
        sh(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--find-links",
                str(LOCAL_WHEELS),
                "-d",
                str(wheelhouse),
                "-r",
                str(reqs),
            ],
            env=env,
        )
        src = self.context / "src"
        (src / "dynamo_images").mkdir(parents=True)
        for name in FIRST_PARTY:
            shutil.copy(REPO / "src/python/dynamo_images" / name, src / "dynamo_images" / name)
        (src / "pyproject.toml").write_text(BASELINE_PYPROJECT)
        (self.context / "Dockerfile").write_text(
            BASELINE_DOCKERFILE.format(base=BASE_IMAGE, requirements=self.framework.requirements)
        )

    def build(self, cold: bool = False) -> None:
        if cold:
            # Upstream's base stages share its Dockerfile, so its cold build rebuilds them too;
            # ours does (Pants builds docker/base:runtime first). Same base, same cost, both sides.
            sh(["./pants", "package", "docker/base:runtime"], cwd=REPO)
        sh(
            [DOCKER, "build", "-q", "-t", BASELINE_IMAGE, str(self.context)],
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
        )

    def change_one_line(self, marker: str) -> None:
        path = self.context / "src/dynamo_images/launch.py"
        path.write_text(path.read_text() + f"_BENCHMARK_MARKER = {marker!r}\n")


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=sorted(FRAMEWORKS), default="vllm")
    args = parser.parse_args()

    changed = REPO / CHANGED_FILE
    original = changed.read_text()
    results: dict[str, dict[str, Result]] = {"baseline": {}, "ours": {}}
    ours = Ours(args.framework)
    with tempfile.TemporaryDirectory(prefix="dynamo-bench-") as tmp:
        baseline = Baseline(Path(tmp), FRAMEWORKS[args.framework])
        print("preparing: base image and the baseline's wheelhouse (not timed)", flush=True)
        sh(["./pants", "package", "docker/base:runtime"], cwd=REPO)
        baseline.prepare()
        try:
            for name, builder, image in (
                ("baseline", baseline, BASELINE_IMAGE),
                ("ours", ours, ours.image),
            ):
                # One side's image and cache at a time: disk holds one engine build, not two.
                remove_image(BASELINE_IMAGE)
                remove_image(ours.image)
                prune_build_cache()
                print(f"{name}: cold", flush=True)
                results[name]["cold"] = timed_build(
                    functools.partial(builder.build, cold=True), image
                )
                print(f"{name}: no-op", flush=True)
                results[name]["no-op"] = timed_build(builder.build, image)
                print(f"{name}: one-line change", flush=True)
                builder.change_one_line(uuid.uuid4().hex)
                results[name]["one-line change"] = timed_build(builder.build, image)
                if name == "baseline":
                    changed.write_text(original)
        finally:
            changed.write_text(original)
            remove_image(BASELINE_IMAGE)
    # Leave our image as the tree describes it, not with the benchmark's marker line.
    ours.build()
    size = subprocess.run(
        [DOCKER, "image", "inspect", "-f", "{{.Size}}", ours.image], text=True, capture_output=True
    ).stdout.strip()

    print()
    print(f"docker/{args.framework}:runtime ({ours.image}): {fmt_bytes(int(size or 0))}")
    print(
        f"{'scenario':<17} {'baseline s':>10} {'ours s':>8} {'baseline/ours':>13}"
        f" {'baseline new layers':>20} {'ours new layers':>16}"
    )
    for scenario in ("cold", "no-op", "one-line change"):
        b, o = results["baseline"][scenario], results["ours"][scenario]
        print(
            f"{scenario:<17} {b.seconds:>10.1f} {o.seconds:>8.1f} {b.seconds / o.seconds:>12.1f}x"
            f" {fmt_bytes(b.new_layer_bytes):>20} {fmt_bytes(o.new_layer_bytes):>16}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
