"""Upstream's build.sh and run.sh flags, each with what it meant there and what it does here.

The one table of that: `build` registers its refused flags from BUILD_FLAGS (so a refusal cannot
exist without its row), and the README's two parity tables are generated from these rows
(`python -m dynamo_images.cli.parity --write` rewrites them; a test fails when they differ).
Upstream: ai-dynamo/dynamo container/build.sh and run.sh, the last build.sh era (Feb 2026).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).with_name("README.md")


@dataclass(frozen=True)
class Flag:
    spellings: tuple[str, ...]
    upstream: str
    ours: str
    # Set for a flag we refuse: the one line `build` prints (after the flag's name).
    refusal: str | None = None
    metavar: str | None = None  # for a refused flag that takes a value; None: a switch

    @property
    def name(self) -> str:
        return self.spellings[0]

    @property
    def dest(self) -> str:
        return self.name.removeprefix("--").replace("-", "_")


REMOTE_CACHE = "the REAPI remote cache in pants.ci.toml plus Docker's local layer cache replace it"
NO_DYNAMO_BUILD = (
    "the images install PyPI's ai-dynamo 1.6.1 wheels, built with upstream's release features; "
    "nothing here compiles Dynamo"
)
TRTLLM_VERSION_PINNED = (
    "the TensorRT-LLM version is the one ai-dynamo pins in the trtllm lock; choose where it comes "
    "from with --tensorrtllm-index-url URL or --tensorrtllm-pip-wheel-dir DIR "
    "(docker/README.md, TensorRT-LLM)"
)
NO_TRTLLM_FROM_GIT = (
    "building TensorRT-LLM from git is not part of this build; build its wheel with "
    "TensorRT-LLM's own scripts and pass --tensorrtllm-pip-wheel-dir"
)

BUILD_FLAGS: tuple[Flag, ...] = (
    Flag(("-h", "-?", "--help"), "print the usage", "the same"),
    Flag(
        ("--framework",),
        "vllm (default), trtllm, sglang, none; any case",
        "the same, `dynamo` = `none`; a framework with no `docker/<framework>/BUILD` is refused "
        "with the list of what is buildable",
    ),
    Flag(
        ("--target",),
        "Dockerfile stage (default dev); local-dev builds on dev",
        "the Pants target `docker/<framework>:<target>` (default dev); `frontend` is the EPP "
        "image; a target the BUILD file does not define is refused with what is",
    ),
    Flag(
        ("--platform",),
        "docker build --platform (linux/amd64, linux/arm64)",
        "`DYNAMO_PLATFORM`; the host's platform only (Pants 2.17 has no build_platform), "
        "linux/amd64",
    ),
    Flag(
        ("--cuda-version",),
        "CUDA of the base and wheels (12.9, 13.x)",
        "`DYNAMO_CUDA_VERSION`, the versions the framework's lock holds (vLLM: 13.0)",
    ),
    Flag(("--base-image",), "base image", "`DYNAMO_BASE_IMAGE`, an image in the local engine"),
    Flag(("--base-image-tag",), "tag of the base image", "joined to --base-image as IMAGE:TAG"),
    Flag(
        ("--build-arg",),
        "docker build --build-arg",
        "Pants' `--docker-build-args` (every image of the build)",
    ),
    Flag(
        ("--tag",),
        "the image's tag instead of dynamo:<version>-<framework>-<target>",
        "an extra tag, applied after the build (Pants always applies the target's tags); with "
        "--push the only tags pushed",
    ),
    Flag(
        ("--no-tag-latest",),
        "no latest-<framework> tag",
        "the latest tag is pointed back at the image it named before",
    ),
    Flag(
        ("--push",),
        "push the built image",
        "with --tag: push exactly those; else `./pants publish` to `DYNAMO_REGISTRY` in the "
        "layout `DYNAMO_REGISTRY_LAYOUT`",
    ),
    Flag(("--dry-run",), "print the commands", "print them as one pasteable shell command"),
    Flag(
        ("--enable-kvbm",),
        "build with the KV block manager",
        "`DYNAMO_ENABLE_KVBM=true`, refused with the framework's reason (vLLM: kvbm 1.6.1 and "
        "ai-dynamo[vllm] 1.6.1 pin different NIXL releases)",
    ),
    Flag(
        ("--uid", "--gid"),
        "UID/GID of the local-dev user (default: yours)",
        "the same; refused for other targets and for values that are not ASCII whole numbers",
    ),
    Flag(
        ("--make-efa",),
        "EFA variant (`-aws`); also accepted with local-dev",
        "the `<target>-aws` target, runtime and dev only (a deliberate difference: no local-dev "
        "EFA target)",
    ),
    Flag(
        ("--tensorrtllm-pip-wheel-dir",),
        "local TensorRT-LLM wheel directory",
        "the same: the trtllm lock takes the wheel from it (`DYNAMO_TRTLLM_WHEEL_DIR`, checked "
        "by `./pants` before any build work); with another framework refused (upstream ignored "
        "it: a deliberate difference)",
    ),
    Flag(
        ("--tensorrtllm-index-url",),
        "download TensorRT-LLM from this index (with --tensorrtllm-pip-wheel)",
        "the index the trtllm lock takes TensorRT-LLM from (`DYNAMO_TRTLLM_INDEX_URL`, default "
        "NVIDIA's); resolved with the other TensorRT-LLM flags to exactly one intent, as upstream",
    ),
    Flag(
        ("--tensorrtllm-pip-wheel",),
        "the TensorRT-LLM requirement to download",
        "refused",
        refusal=TRTLLM_VERSION_PINNED,
        metavar="REQUIREMENT",
    ),
    Flag(
        ("--tensorrtllm-git-url", "--tensorrtllm-commit"),
        "build TensorRT-LLM from git",
        "resolved to one intent as upstream, then refused: " + NO_TRTLLM_FROM_GIT,
    ),
    Flag(
        ("--use-default-experimental-tensorrtllm-commit",),
        "build TensorRT-LLM at a pinned experimental commit",
        "refused",
        refusal=NO_TRTLLM_FROM_GIT,
    ),
    Flag(
        ("--trtllm-use-nixl-kvcache-experimental",),
        "TensorRT-LLM built with NIXL KV cache transfer",
        "refused",
        refusal=NO_TRTLLM_FROM_GIT,
    ),
    Flag(
        ("--no-cache",),
        "docker build --no-cache",
        "refused",
        refusal="Pants 2.17 has no [docker] no-cache option (it arrived in 2.18); run "
        "`docker builder prune` to empty Docker's layer cache, then build again",
    ),
    Flag(
        ("--cache-from",),
        "buildx cache source",
        "refused",
        refusal=REMOTE_CACHE,
        metavar="REF",
    ),
    Flag(("--cache-to",), "buildx cache target", "refused", refusal=REMOTE_CACHE, metavar="REF"),
    Flag(
        ("--build-context",),
        "extra named buildx context NAME=PATH",
        "refused",
        refusal="an image's inputs are Pants targets: add the files as a dependency of the image "
        "target in its BUILD file",
        metavar="NAME=PATH",
    ),
    Flag(
        ("--no-load",),
        "leave the image in the buildx builder",
        "refused",
        refusal="./pants package always loads the image into the local engine (Pants 2.17 has no "
        "output option); --push publishes it",
    ),
    Flag(
        ("--release-build",),
        "release build (version without .dev)",
        "refused",
        refusal="the version comes from git (a tag on HEAD gives vX.Y.Z); set DYNAMO_VERSION to "
        "choose another",
    ),
    Flag(
        ("--dev-image",),
        "build local-dev from an existing dev image",
        "refused",
        refusal="local-dev images build on the framework's :dev target; give --target local-dev",
        metavar="IMAGE",
    ),
    Flag(
        ("--efa-version",),
        "EFA installer version",
        "refused",
        refusal="EFA libraries come from Debian's libfabric and rdma-core packages, so there is "
        "no installer version to pick",
        metavar="VERSION",
    ),
    Flag(
        ("--enable-gpu-memory-service",),
        "build Dynamo's GPU memory service",
        "refused",
        refusal="upstream builds it from Dynamo's sources; PyPI's ai-dynamo 1.6.1, which the "
        "images install, ships none and no PyPI package provides it",
    ),
    Flag(
        ("--enable-media-nixl",),
        "Dynamo's media decoding over NIXL",
        "refused",
        refusal=NO_DYNAMO_BUILD,
    ),
    Flag(
        ("--enable-media-ffmpeg",),
        "Dynamo's media decoding with FFmpeg",
        "refused",
        refusal=NO_DYNAMO_BUILD,
    ),
    Flag(
        ("--nixl-ref",),
        "NIXL git ref to build",
        "refused",
        refusal="NIXL comes from the nixl wheel pinned in the framework's lock "
        "(3rdparty/python/<framework>.lock); change the pin and regenerate the lock",
        metavar="REF",
    ),
    Flag(
        ("--vllm-max-jobs",),
        "MAX_JOBS for compiling vLLM",
        "refused",
        refusal="vLLM is installed from its PyPI wheel (3rdparty/python/vllm.lock), so nothing "
        "compiles it and there are no jobs to set",
        metavar="N",
    ),
    Flag(
        ("--use-sccache", "--sccache-bucket", "--sccache-region"),
        "sccache on S3 for Rust/C++ compiles",
        "refused (without bucket and region first reported as upstream did)",
    ),
)

RUN_FLAGS: tuple[Flag, ...] = (
    Flag(("-h", "--help"), "print the usage", "the same"),
    Flag(
        ("--image",),
        "image to run (default from framework and target)",
        "the same; a bad reference is refused before any work",
    ),
    Flag(
        ("--framework", "--target"),
        "pick the image (default target: dev)",
        "the same; with a foreign --image, --target still says which user the image runs as",
    ),
    Flag(("--name",), "container name", "the same, checked against docker's name rule"),
    Flag(
        ("--hf-cache", "--hf-home"),
        "HF cache mounted (with --mount-workspace or $HF_HOME), created first with mkdir -p",
        "mounted by default ($HF_HOME, else ~/.cache/huggingface; `none`: not); created first, "
        "also by the dry run's printed command; when root runs a non-root image it gets the "
        "container user as owner",
    ),
    Flag(
        ("--gpus",),
        "default all; none drops the GPU request and the nvidia runtime",
        "the same",
    ),
    Flag(
        ("--runtime",),
        "default nvidia with GPUs",
        "the same; a runtime the engine lacks is refused with the ones it has",
    ),
    Flag(("--entrypoint", "--workdir"), "override; workdir /workspace", "the same"),
    Flag(("--privileged", "--rm"), "TRUE/FALSE; privileged false, rm true", "the same"),
    Flag(("-v", "-p", "--port", "-e"), "repeatable", "the same; relative -v sources absolute"),
    Flag(
        ("--ulimit",),
        "not a flag (fixed memlock, stack, nofile)",
        "replaces a fixed ulimit of that name or adds one (engines that may not raise limits)",
    ),
    Flag(("-it",), "interactive with a terminal; -i rejected", "the same"),
    Flag(
        ("--mount-workspace",),
        "checkout at /workspace, /tmp, /mnt, HF_TOKEN (no --privileged since Jan 2026)",
        "the same",
    ),
    Flag(("--use-nixl-gds",), "/run/udev, /tmp, IPC_LOCK", "the same"),
    Flag(("--network",), "default host", "the same"),
    Flag(("--user",), "non-root also gets --group-add 0", "the same"),
    Flag(
        ("--dry-run",),
        "print the command (quoting lost)",
        "print what the real run does, pasteable",
    ),
    Flag(("--",), "the container command follows", "the same"),
)

MARKER = "<!-- generated by dynamo_images.cli.parity: {} -->"
END_MARKER = "<!-- end of generated table -->"
TABLES = {"build flags": BUILD_FLAGS, "run flags": RUN_FLAGS}


def markdown(rows: tuple[Flag, ...]) -> str:
    lines = ["| flag | upstream | here |", "| --- | --- | --- |"]
    for row in rows:
        spelled = ", ".join(f"`{spelling}`" for spelling in row.spellings)
        ours = f"refused: {row.refusal}" if row.refusal else row.ours
        lines.append(f"| {spelled} | {row.upstream} | {ours} |".replace("\n", " "))
    return "\n".join(lines)


def render_readme(text: str) -> str:
    """`text` with each generated table replaced by what the rows say now."""
    for title, rows in TABLES.items():
        start = MARKER.format(title)
        pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(END_MARKER), re.DOTALL)
        found = pattern.search(text)
        if not found:
            raise ValueError(f"{README} lacks the marker {start!r}")
        table = f"{start}\n{markdown(rows)}\n{END_MARKER}"
        text = text[: found.start()] + table + text[found.end() :]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check or rewrite the README's parity tables.")
    parser.add_argument("--write", action="store_true", help="rewrite them in place")
    args = parser.parse_args(argv)
    current = README.read_text()
    wanted = render_readme(current)
    if args.write:
        README.write_text(wanted)
        return 0
    if wanted != current:
        print(f"{README}: parity tables are stale; run with --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
