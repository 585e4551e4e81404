"""The one table of what images exist: frameworks, targets, their Pants addresses and tags.

Every image is a Pants `docker_image` target at `docker/<image_dir>:<target>` and is tagged
`dynamo:latest-<image_dir>-<target>` (plus whatever version tags its BUILD file adds). EFA builds
are separate targets with an `-aws` suffix:
`docker/vllm:runtime-aws` -> `dynamo:latest-vllm-runtime-aws`.
The EPP ("frontend") image has no framework: `docker/epp:runtime`, tagged
`dynamo-images/epp:latest`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dynamo_images.cli.errors import UsageError

FRAMEWORKS = ("dynamo", "vllm", "sglang", "trtllm")
# Upstream called the engine-less image "none"; the renderer era renamed it "dynamo".
FRAMEWORK_ALIASES = {"none": "dynamo"}
ENGINE_FRAMEWORKS = ("vllm", "sglang", "trtllm")
DEFAULT_FRAMEWORK = "vllm"

# Upstream build.sh builds the `dev` stage when --target is absent, and run.sh's default image
# (`dynamo:latest-<framework>`, no target suffix) is that dev image; our tags always carry the
# target, so the default is spelled out.
DEFAULT_TARGET = "dev"

EFA_SUFFIX = "-aws"
EFA_TARGETS = ("runtime", "dev")

# Which targets each command accepts. `framework` is the engine build stage, so only engine
# frameworks have it; `frontend` is the EPP image and ignores the framework.
# `pre-engine`: an engine's image without the engine, where the engine has no source (TRT-LLM).
RUN_TARGETS = ("runtime", "dev", "local-dev", "pre-engine")
BUILD_TARGETS = ("runtime", "dev", "local-dev", "pre-engine", "framework", "frontend")
FRONTEND_TARGET = "frontend"
FRONTEND_IMAGE_DIR = "epp"
FRONTEND_PANTS_TARGET = "runtime"
FRONTEND_LATEST_TAG = "dynamo-images/epp:latest"

IMAGE_REPOSITORY = "dynamo"
LATEST_TAG_PREFIX = "latest-"

# The runtime user baked into every image (OpenShift style: UID 1000, GID 0). Only `dev` runs as
# root, for upstream's legacy workflows.
CONTAINER_USER = "dynamo"
CONTAINER_USER_UID = 1000
CONTAINER_USER_HOME = "/home/dynamo"
ROOT_HOME = "/root"
ROOT_TARGETS = ("dev",)
HF_CACHE_UNDER_HOME = ".cache/huggingface"

# Pants writes `<spec path with / as .>/<target name>.docker-info.json` under its dist dir.
PANTS_DIST_DIR = "dist"


@dataclass(frozen=True)
class ImageRef:
    """One buildable image: the Pants target that builds it and the tag it gets."""

    image_dir: str  # the framework, or "epp" for the frontend image
    target: str  # the Pants target name, `-aws` suffix included
    base_target: str  # the target without the EFA suffix

    @property
    def efa(self) -> bool:
        return self.target.endswith(EFA_SUFFIX)

    @property
    def pants_address(self) -> str:
        return f"docker/{self.image_dir}:{self.target}"

    @property
    def latest_tag(self) -> str:
        if self.image_dir == FRONTEND_IMAGE_DIR:
            return FRONTEND_LATEST_TAG
        return f"{IMAGE_REPOSITORY}:{LATEST_TAG_PREFIX}{self.image_dir}-{self.target}"

    @property
    def docker_info_path(self) -> str:
        return f"{PANTS_DIST_DIR}/docker.{self.image_dir}/{self.target}.docker-info.json"

    @property
    def runs_as_root(self) -> bool:
        return self.base_target in ROOT_TARGETS


def accepted_frameworks() -> str:
    aliases = ", ".join(f"{alias} (= {name})" for alias, name in FRAMEWORK_ALIASES.items())
    return f"{', '.join(FRAMEWORKS)}; alias {aliases}"


def normalize_framework(value: str) -> str:
    """Map a user-given framework (any case, aliases allowed) to its canonical name."""
    name = value.strip().lower()
    name = FRAMEWORK_ALIASES.get(name, name)
    if name not in FRAMEWORKS:
        raise UsageError(f"unknown framework '{value}'; accepted: {accepted_frameworks()}")
    return name


def _split_efa(target: str) -> tuple[str, bool]:
    if target.endswith(EFA_SUFFIX):
        return target[: -len(EFA_SUFFIX)], True
    return target, False


def _check_target(target: str, accepted: tuple[str, ...]) -> None:
    if target not in accepted:
        raise UsageError(f"unknown target '{target}'; accepted: {', '.join(accepted)}")


def _check_framework_has_target(framework: str, target: str) -> None:
    if target == "framework" and framework not in ENGINE_FRAMEWORKS:
        raise UsageError(
            f"target 'framework' is the engine build stage and framework '{framework}' has no "
            f"engine; accepted frameworks for it: {', '.join(ENGINE_FRAMEWORKS)}"
        )


def _check_efa_target(target: str) -> None:
    if target not in EFA_TARGETS:
        raise UsageError(
            f"EFA images exist for targets {' and '.join(EFA_TARGETS)} only, not '{target}'"
        )


def build_image(framework: str, target: str, efa: bool) -> ImageRef:
    """The image `build --framework F --target T [--make-efa]` produces.

    `framework` must already be canonical (see normalize_framework).
    """
    _check_target(target, BUILD_TARGETS)
    if target == FRONTEND_TARGET:
        if efa:
            _check_efa_target(target)
        return ImageRef(FRONTEND_IMAGE_DIR, FRONTEND_PANTS_TARGET, FRONTEND_PANTS_TARGET)
    _check_framework_has_target(framework, target)
    if efa:
        _check_efa_target(target)
        return ImageRef(framework, target + EFA_SUFFIX, target)
    return ImageRef(framework, target, target)


def run_image(framework: str, target: str) -> ImageRef:
    """The image `run --framework F --target T` starts; T may carry the `-aws` suffix."""
    base_target, efa = _split_efa(target)
    accepted = RUN_TARGETS + tuple(t + EFA_SUFFIX for t in EFA_TARGETS)
    if base_target not in RUN_TARGETS or (efa and base_target not in EFA_TARGETS):
        raise UsageError(f"unknown target '{target}'; accepted: {', '.join(accepted)}")
    return ImageRef(framework, target, base_target)


_LATEST_TAG_PATTERN = re.compile(
    rf"^{IMAGE_REPOSITORY}:{LATEST_TAG_PREFIX}(?P<image_dir>[a-z]+)-(?P<target>[a-z-]+)$"
)


def image_for_tag(tag: str) -> ImageRef | None:
    """The table entry behind one of our `latest` tags, or None for any other image name."""
    if tag == FRONTEND_LATEST_TAG:
        return ImageRef(FRONTEND_IMAGE_DIR, FRONTEND_PANTS_TARGET, FRONTEND_PANTS_TARGET)
    match = _LATEST_TAG_PATTERN.match(tag)
    if not match:
        return None
    image_dir, target = match["image_dir"], match["target"]
    base_target, efa = _split_efa(target)
    if image_dir not in FRAMEWORKS or base_target not in BUILD_TARGETS:
        return None
    if base_target == FRONTEND_TARGET or (efa and base_target not in EFA_TARGETS):
        return None
    if base_target == "framework" and image_dir not in ENGINE_FRAMEWORKS:
        return None
    return ImageRef(image_dir, target, base_target)
