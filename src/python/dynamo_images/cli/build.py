"""`dynamo-images build`: upstream build.sh's flags, translated into a `./pants package` run.

Image knobs travel as environment variables named in BUILD_KNOBS, which the image targets read
through `extra_build_args` (a bare `extra_build_args=["DYNAMO_CUDA_VERSION"]` entry takes its value
from Pants' environment, and the Dockerfile's `ARG` default applies when it is unset). Pants'
`[docker].build_args` would instead apply to every image of the build.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dynamo_images import trtllm_source
from dynamo_images.cli import buildfiles, images, parity, references, registry
from dynamo_images.cli.engine import connect, one_line, sdk
from dynamo_images.cli.errors import EnvironmentProblem, UsageError
from dynamo_images.cli.integers import parse_int
from dynamo_images.cli.run import add_framework_argument, non_empty
from dynamo_images.cli.workspace import find_repo_root

if TYPE_CHECKING:
    import docker

PANTS_LAUNCHER = "./pants"


@dataclass(frozen=True)
class Knob:
    """A build.sh flag whose value reaches the image as the build arg `env_var`."""

    flag: str
    env_var: str
    help: str
    metavar: str | None = None  # None: a switch, which sets the variable to "true"

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


# The single table of knob -> environment variable; each variable is read by a BUILD file
# (framework_image() in pants-plugins/macros.py, DYNAMO_BASE_IMAGE in docker/base/BUILD), which
# also rejects values it cannot honour. Names follow DYNAMO_<FLAG IN UPPER CASE>.
BUILD_KNOBS = (
    Knob(
        "--platform",
        "DYNAMO_PLATFORM",
        "linux/amd64 (the platform of the locks and base root filesystems)",
        "PLATFORM",
    ),
    Knob(
        "--cuda-version",
        "DYNAMO_CUDA_VERSION",
        "CUDA version of the engine's wheels; each framework accepts what its lock holds",
        "VERSION",
    ),
    Knob(
        "--base-image",
        "DYNAMO_BASE_IMAGE",
        "base image in the local engine instead of docker/base's Debian stage",
        "IMAGE",
    ),
    Knob("--enable-kvbm", "DYNAMO_ENABLE_KVBM", "build with the KV block manager"),
)
KNOBS_BY_FLAG = {knob.flag: knob for knob in BUILD_KNOBS}
KNOB_VARIABLES = {knob.env_var for knob in BUILD_KNOBS}


def env_var(flag: str) -> str:
    """The environment variable a knob flag sets."""
    return KNOBS_BY_FLAG[flag].env_var


SUPPORTED_PLATFORMS = {
    "x86_64": "linux/amd64",
    "amd64": "linux/amd64",
    "aarch64": "linux/arm64",
    "arm64": "linux/arm64",
}

# build.sh flags refused outright, each with what replaces it: parity.BUILD_FLAGS' refusals.
REFUSED_FLAGS = tuple(flag for flag in parity.BUILD_FLAGS if flag.refusal)
SCCACHE_REFUSAL = "--use-sccache: the REAPI remote cache in pants.ci.toml replaces sccache"
# Where `--push` without --tag publishes: pants.toml's registries read these (docker/README.md).
REGISTRY_VARIABLE = "DYNAMO_REGISTRY"
REGISTRY_LAYOUT_VARIABLE = "DYNAMO_REGISTRY_LAYOUT"

# TensorRT-LLM install intents, as upstream's determine_user_intention_trtllm resolved them.
TRTLLM_FLAGS = (
    "--tensorrtllm-pip-wheel",
    "--tensorrtllm-index-url",
    "--tensorrtllm-pip-wheel-dir",
    "--tensorrtllm-git-url",
    "--tensorrtllm-commit",
)
# Why a target that upstream's build.sh had is not defined here.
NOT_DEFINED_REASONS = {
    "framework": "engines come prebuilt from PyPI wheels, in the runtime image's layers, so "
    "there is no engine build stage",
}
# Pants applies every image_tags entry, latest included; for --no-tag-latest the latest tag is
# pointed back at the image it named before the build (or removed if it named none).
PREVIOUS_LATEST_VARIABLE = "previous_latest"
IMAGE_ID_VARIABLE = "image_id"
STEP_SEPARATOR = " && \\\n"


def host_platform() -> str | None:
    return SUPPORTED_PLATFORMS.get(platform.machine().lower())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # build.sh's other spelling of -h.
    parser.add_argument("-?", action="help", help=argparse.SUPPRESS)
    add_framework_argument(parser)
    parser.add_argument(
        "--target",
        type=non_empty,
        default=images.DEFAULT_TARGET,
        help=f"one of {', '.join(images.BUILD_TARGETS)} "
        f"(default: {images.DEFAULT_TARGET}, as upstream); "
        "frontend is the EPP image docker/epp:runtime",
    )
    for knob in BUILD_KNOBS:
        if knob.metavar is None:
            parser.add_argument(
                knob.flag,
                action="store_true",
                help=f"{knob.help} (sets {knob.env_var}=true)",
            )
        else:
            parser.add_argument(
                knob.flag,
                type=non_empty,
                metavar=knob.metavar,
                help=f"{knob.help} (sets {knob.env_var})",
            )
    parser.add_argument(
        "--base-image-tag",
        type=non_empty,
        metavar="TAG",
        help="tag of --base-image (joined to it as IMAGE:TAG)",
    )
    parser.add_argument(
        "--uid",
        type=non_empty,
        metavar="UID",
        help="UID of the dynamo user in local-dev images (default: yours)",
    )
    parser.add_argument(
        "--gid",
        type=non_empty,
        metavar="GID",
        help="GID of the dynamo user in local-dev images (default: yours)",
    )
    parser.add_argument(
        "--tensorrtllm-pip-wheel-dir",
        type=non_empty,
        metavar="DIR",
        help="directory holding the TensorRT-LLM wheel the trtllm lock takes",
    )
    parser.add_argument(
        "--build-arg",
        dest="build_args",
        action="append",
        default=[],
        type=non_empty,
        metavar="NAME=VALUE",
        help="extra build arg, passed as Pants' --docker-build-args "
        "(reaches every image of the build)",
    )
    parser.add_argument(
        "--tag",
        dest="tags",
        action="append",
        default=[],
        type=non_empty,
        metavar="IMAGE:TAG",
        help="also tag the built image so (repeatable; applied after the build with docker tag)",
    )
    parser.add_argument(
        "--make-efa",
        action="store_true",
        help="build the AWS EFA variant (<target>-aws; runtime and dev only)",
    )
    parser.add_argument(
        "--no-tag-latest",
        action="store_true",
        help="leave dynamo:latest-<framework>-<target> naming the image it named before",
    )
    parser.add_argument(
        "--push",
        action="store_true",
        help="publish with ./pants publish (and docker push each --tag)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the commands instead of running them",
    )
    parser.add_argument(
        "--tensorrtllm-index-url",
        type=non_empty,
        metavar="URL",
        help="the package index the trtllm lock takes TensorRT-LLM from (default NVIDIA's)",
    )
    parser.add_argument(
        "--tensorrtllm-git-url",
        type=non_empty,
        metavar="URL",
        help="refused: building TensorRT-LLM from git is not part of this build",
    )
    parser.add_argument(
        "--tensorrtllm-commit",
        type=non_empty,
        metavar="REF",
        help="refused along with --tensorrtllm-git-url",
    )
    for flag in REFUSED_FLAGS:
        if flag.metavar is None:
            parser.add_argument(
                *flag.spellings, action="store_true", help=f"refused: {flag.refusal}"
            )
        else:
            parser.add_argument(
                *flag.spellings,
                type=non_empty,
                metavar=flag.metavar,
                help=f"refused: {flag.refusal}",
            )
    parser.add_argument(
        "--use-sccache",
        action="store_true",
        help="refused: the remote cache replaces sccache",
    )
    parser.add_argument(
        "--sccache-bucket",
        type=non_empty,
        metavar="BUCKET",
        help="refused with --use-sccache",
    )
    parser.add_argument(
        "--sccache-region",
        type=non_empty,
        metavar="REGION",
        help="refused with --use-sccache",
    )


@dataclass(frozen=True)
class BuildPlan:
    repo_root: Path
    image: images.ImageRef
    knob_env: tuple[tuple[str, str], ...]  # (variable, value) in BUILD_KNOBS order
    pants_options: tuple[str, ...]  # global Pants options placed before the goals
    extra_tags: tuple[str, ...]
    push: bool
    keep_previous_latest: bool
    # Registries (HOST[:PORT]) that must answer before the build starts: where --push goes.
    registries_to_check: tuple[str, ...] = ()

    @property
    def publish_with_pants(self) -> bool:
        """--push without --tag: ./pants publish pushes the target's tags to DYNAMO_REGISTRY.
        With --tag, exactly the given tags are pushed, and Pants publishes nothing."""
        return self.push and not self.extra_tags

    @property
    def pants_argv(self) -> list[str]:
        goals = ["package", "publish"] if self.publish_with_pants else ["package"]
        return [PANTS_LAUNCHER, *self.pants_options, *goals, self.image.pants_address]

    def shell_script(self, cwd: Path) -> str:
        """The steps as one shell command (joined with &&) that does what a real build does."""
        steps = []
        if cwd.resolve() != self.repo_root:
            steps.append(shlex.join(["cd", str(self.repo_root)]))
        if self.keep_previous_latest:
            inspect = shlex.join(
                [
                    "docker",
                    "image",
                    "inspect",
                    "--format",
                    "{{.Id}}",
                    self.image.latest_tag,
                ]
            )
            steps.append(f"{PREVIOUS_LATEST_VARIABLE}=$({inspect} 2>/dev/null || true)")
        assignments = [f"{name}={shlex.quote(value)}" for name, value in self.knob_env]
        steps.append(" ".join([*assignments, shlex.join(self.pants_argv)]))
        if self.extra_tags:
            read_id = shlex.join(
                [
                    "python3",
                    "-c",
                    'import json, sys; print(json.load(open(sys.argv[1]))["image_id"])',
                    self.image.docker_info_path,
                ]
            )
            steps.append(f"{IMAGE_ID_VARIABLE}=$({read_id})")
            for tag in self.extra_tags:
                steps.append(f'docker tag "${IMAGE_ID_VARIABLE}" {shlex.quote(tag)}')
            if self.push:
                steps += [shlex.join(["docker", "push", tag]) for tag in self.extra_tags]
        if self.keep_previous_latest:
            latest = shlex.quote(self.image.latest_tag)
            steps.append(
                f'if [ -n "${PREVIOUS_LATEST_VARIABLE}" ]; '
                f'then docker tag "${PREVIOUS_LATEST_VARIABLE}" {latest}; '
                f"else docker rmi {latest}; fi"
            )
        return STEP_SEPARATOR.join(steps)


def _given_trtllm_flags(args: argparse.Namespace) -> list[str]:
    return [
        flag for flag in TRTLLM_FLAGS if getattr(args, flag.removeprefix("--").replace("-", "_"))
    ]


def _trtllm_source(args: argparse.Namespace, cwd: Path, repo_root: Path) -> dict[str, str]:
    """Upstream's three intents (download from an index / install a local wheel / build from git)
    must resolve to exactly one. The first two are sources of trtllm_source.py, as the variables
    ./pants reads (it checks them against the trtllm lock before any build work); building from
    git is refused."""
    download = bool(args.tensorrtllm_pip_wheel or args.tensorrtllm_index_url)
    install = bool(args.tensorrtllm_pip_wheel_dir)
    from_git = bool(args.tensorrtllm_git_url or args.tensorrtllm_commit)
    if download + install + from_git > 1:
        raise UsageError(
            "cannot tell how to install TensorRT-LLM from "
            f"{', '.join(_given_trtllm_flags(args))}; give exactly one of: "
            "--tensorrtllm-index-url (download), "
            "--tensorrtllm-pip-wheel-dir (local wheel), "
            "--tensorrtllm-git-url [--tensorrtllm-commit] (build from source)"
        )
    if args.tensorrtllm_git_url:
        raise UsageError(f"--tensorrtllm-git-url: {parity.NO_TRTLLM_FROM_GIT}")
    if args.tensorrtllm_commit:
        raise UsageError(
            "--tensorrtllm-commit only picks what to build from git, which this build does not do; "
            f"{parity.TRTLLM_VERSION_PINNED}"
        )
    env: dict[str, str] = {}
    if args.tensorrtllm_index_url:
        env[trtllm_source.INDEX_VAR] = args.tensorrtllm_index_url
    if args.tensorrtllm_pip_wheel_dir:
        directory = (cwd / os.path.expanduser(args.tensorrtllm_pip_wheel_dir)).resolve()
        if not directory.is_dir():
            raise EnvironmentProblem(
                f"--tensorrtllm-pip-wheel-dir {args.tensorrtllm_pip_wheel_dir}: no such directory"
            )
        env[trtllm_source.WHEEL_DIR_VAR] = str(directory)
    try:
        trtllm_source.select(env, repo_root)
    except trtllm_source.SourceError as e:
        raise UsageError(str(e)) from None
    return env


def _buildable(defined: dict[str, tuple[str, ...]]) -> str:
    return ", ".join(f"docker/{d}:{t}" for d, targets in defined.items() for t in targets)


def _check_defined(
    image: images.ImageRef,
    framework: str,
    defined: dict[str, tuple[str, ...]],
    trtllm_env: Mapping[str, str],
    repo_root: Path,
) -> None:
    """The address must be a docker_image that docker/*/BUILD defines."""
    if image.target in defined.get(image.image_dir, ()):
        return
    if (
        image.image_dir in defined
        and framework == "trtllm"
        and image.target in buildfiles.FRAMEWORK_IMAGE_TARGETS
    ):
        # Defined once the trtllm lock exists: say what to provide, as ./pants would.
        try:
            trtllm_source.check_lock(trtllm_source.select(trtllm_env, repo_root), repo_root)
        except trtllm_source.SourceError as e:
            raise UsageError(str(e)) from None
    if image.image_dir not in defined:
        why = f"framework '{framework}' has no images yet (no docker/{image.image_dir}/BUILD)"
    elif image.base_target in NOT_DEFINED_REASONS:
        why = f"{image.pants_address}: {NOT_DEFINED_REASONS[image.base_target]}"
    else:
        why = f"{image.pants_address} is not defined in docker/{image.image_dir}/BUILD"
    raise UsageError(f"{why}; buildable: {_buildable(defined)}")


def _check_values(args: argparse.Namespace) -> None:
    """Refuse, before any work, values that Docker or Pants would refuse only after the build."""
    for flag, value in (("--uid", args.uid), ("--gid", args.gid)):
        if value is not None:
            number = parse_int(value)
            if number is None or number < 0:
                raise UsageError(f"{flag} '{value}' is not a whole number >= 0 (ASCII digits)")
    for tag in args.tags:
        references.parse(tag, "--tag", allow_digest=False)
    if args.base_image:
        references.parse(args.base_image, "--base-image", allow_digest=not args.base_image_tag)
    if args.base_image_tag and not re.fullmatch(
        references.TAG_PATTERN, args.base_image_tag, re.ASCII
    ):
        raise UsageError(
            f"--base-image-tag '{args.base_image_tag}' is not a tag: up to 128 of "
            "A-Z a-z 0-9 _ . -, not starting with . or -"
        )


def _push_registries(args: argparse.Namespace, host_env: Mapping[str, str]) -> tuple[str, ...]:
    """Where --push sends the image: each --tag's registry, else DYNAMO_REGISTRY."""
    if args.tags:
        return tuple(
            dict.fromkeys(
                registry.address_of(references.parse(tag, "--tag", allow_digest=False))
                for tag in args.tags
            )
        )
    address = host_env.get(REGISTRY_VARIABLE, "")
    if not address:
        raise UsageError(
            f"--push needs a registry: name the image with --tag REGISTRY/NAME:TAG, or set "
            f"{REGISTRY_VARIABLE}=HOST[:PORT][/PATH] for ./pants publish "
            f"(layout: {REGISTRY_LAYOUT_VARIABLE}=dynamo|upstream; see docker/README.md)"
        )
    return (registry.parse_address(address, REGISTRY_VARIABLE),)


def plan_build(
    args: argparse.Namespace,
    cwd: Path,
    host_uid: int,
    host_gid: int,
    host_env: Mapping[str, str] | None = None,
) -> BuildPlan:
    """Validate build.sh-style arguments and translate them into a BuildPlan."""
    host_env = os.environ if host_env is None else host_env
    _check_values(args)
    framework = images.normalize_framework(args.framework or images.DEFAULT_FRAMEWORK)
    target = args.target
    image = images.build_image(framework, target, args.make_efa)
    if target == images.FRONTEND_TARGET and args.framework and framework != "dynamo":
        raise UsageError(
            f"--target frontend builds the EPP image {image.pants_address}, which has no "
            f"framework; drop --framework {args.framework}"
        )

    if (args.uid or args.gid) and target != "local-dev":
        raise UsageError(f"--uid/--gid apply to --target local-dev only, not '{target}'")

    if args.use_sccache:
        missing = [
            flag
            for flag, value in (
                ("--sccache-bucket", args.sccache_bucket),
                ("--sccache-region", args.sccache_region),
            )
            if not value
        ]
        if missing:
            raise UsageError(f"--use-sccache needs {' and '.join(missing)}")
    if args.use_sccache or args.sccache_bucket or args.sccache_region:
        raise UsageError(SCCACHE_REFUSAL)

    for flag in REFUSED_FLAGS:
        if getattr(args, flag.dest):
            raise UsageError(f"{flag.name}: {flag.refusal}")
    trtllm_flags = _given_trtllm_flags(args)
    if trtllm_flags and framework != "trtllm":
        raise UsageError(f"{trtllm_flags[0]} applies to --framework trtllm only, not '{framework}'")
    if args.platform:
        accepted = sorted(set(SUPPORTED_PLATFORMS.values()))
        if args.platform not in accepted:
            raise UsageError(
                f"unknown --platform '{args.platform}'; accepted: {', '.join(accepted)}"
            )
        if args.platform != host_platform():
            raise UsageError(
                f"--platform {args.platform}: Pants 2.17 builds for the host's platform only "
                "(no build_platform field) and this host is "
                f"{host_platform() or platform.machine()}; "
                f"build on an {args.platform.split('/')[1]} host"
            )
    if args.no_tag_latest and args.push and not args.tags:
        raise UsageError(
            "--no-tag-latest cannot be combined with --push without --tag: ./pants publish "
            f"pushes every tag of {image.pants_address}, latest included; give --tag"
        )
    if args.base_image_tag and not args.base_image:
        raise UsageError("--base-image-tag needs --base-image (the image it tags)")

    # What exists, and each framework's knob facts, come from docker/*/BUILD themselves.
    repo_root = find_repo_root(cwd)
    # docker/base holds no image of its own that `build` names (upstream had none either).
    defined = {
        image_dir: targets
        for image_dir, targets in buildfiles.docker_image_targets(repo_root).items()
        if image_dir in (*images.FRAMEWORKS, images.FRONTEND_IMAGE_DIR)
    }
    trtllm_env: dict[str, str] = {}
    if framework == "trtllm" and target != images.FRONTEND_TARGET:
        trtllm_env = _trtllm_source(args, cwd, repo_root)
    _check_defined(
        image,
        framework,
        defined,
        {**{k: v for k, v in host_env.items() if k.startswith("DYNAMO_TRTLLM_")}, **trtllm_env},
        repo_root,
    )
    facts = buildfiles.frameworks(repo_root).get(framework)
    framework_knobs = [
        flag
        for flag, given in (
            ("--cuda-version", args.cuda_version),
            ("--enable-kvbm", args.enable_kvbm),
        )
        if given
    ]
    if framework_knobs and (facts is None or target == images.FRONTEND_TARGET):
        raise UsageError(
            f"{framework_knobs[0]} applies to framework images, not {image.pants_address}"
        )

    values: dict[str, str] = {}
    if args.platform:
        values[env_var("--platform")] = args.platform
    if args.cuda_version and facts:
        if not facts.cuda_versions:
            raise UsageError(
                f"--cuda-version {args.cuda_version}: the {framework} image has no CUDA libraries"
            )
        if args.cuda_version not in facts.cuda_versions:
            raise UsageError(
                f"unsupported --cuda-version '{args.cuda_version}' for {framework}; accepted: "
                f"{', '.join(facts.cuda_versions)}"
                + (f" ({facts.cuda_why})" if facts.cuda_why else "")
            )
        values[env_var("--cuda-version")] = args.cuda_version
    if args.base_image:
        reference = args.base_image + (f":{args.base_image_tag}" if args.base_image_tag else "")
        values[env_var("--base-image")] = reference
    if args.enable_kvbm and facts:
        if facts.kvbm_refusal:
            raise UsageError(f"--enable-kvbm: not available for {framework}: {facts.kvbm_refusal}")
        values[env_var("--enable-kvbm")] = "true"
    values.update(trtllm_env)
    if target == "local-dev":
        # As upstream: the dynamo user takes the builder's own UID/GID unless told otherwise.
        uid = parse_int(args.uid) if args.uid else host_uid
        if uid == 0:
            raise UsageError(
                "--uid 0: local-dev maps the dynamo user to a non-root UID"
                if args.uid
                else "local-dev maps the dynamo user to your UID, and you are root: pass --uid N"
                " [--gid M]"
            )
        values["DYNAMO_UID"] = str(uid)
        values["DYNAMO_GID"] = str(parse_int(args.gid)) if args.gid else str(host_gid)

    pants_options = []
    for build_arg in args.build_args:
        name, has_value, _ = build_arg.partition("=")
        if not has_value or not name:
            raise UsageError(f"--build-arg '{build_arg}' is not NAME=VALUE")
        # The option is a shell-string list: Pants splits each value shell-style, so quote it.
        pants_options.append(f"--docker-build-args={shlex.quote(build_arg)}")
    registries_to_check = _push_registries(args, host_env) if args.push else ()
    if args.push and not args.tags:
        # Shown in the dry run; pants.toml's publish registry reads them.
        for variable in (REGISTRY_VARIABLE, REGISTRY_LAYOUT_VARIABLE):
            if host_env.get(variable):
                values[variable] = host_env[variable]

    ordered_env = tuple(
        (knob.env_var, values[knob.env_var]) for knob in BUILD_KNOBS if knob.env_var in values
    ) + tuple((name, value) for name, value in values.items() if name not in KNOB_VARIABLES)
    return BuildPlan(
        repo_root=repo_root,
        image=image,
        knob_env=ordered_env,
        pants_options=tuple(pants_options),
        extra_tags=tuple(args.tags),
        push=args.push,
        keep_previous_latest=args.no_tag_latest,
        registries_to_check=registries_to_check,
    )


def _image_id_of(client: docker.DockerClient, reference: str) -> str | None:
    try:
        return str(client.images.get(reference).id)
    except sdk().errors.ImageNotFound:
        return None


def _push(client: docker.DockerClient, tag: str) -> None:
    reference = references.parse(tag, "--tag", allow_digest=False)
    print(f"+ docker push {tag}", file=sys.stderr)
    try:
        for status in client.api.push(
            reference.repository, tag=reference.tag_or_latest, stream=True, decode=True
        ):
            if "error" in status:
                raise EnvironmentProblem(f"docker push {tag} failed: {one_line(status['error'])}")
    except sdk().errors.APIError as error:
        raise EnvironmentProblem(
            f"docker push {tag} failed: {one_line(error.explanation or error)}"
        ) from error


def _untag(client: docker.DockerClient, tags: list[str]) -> None:
    """Remove tags this build added, so that a failed push leaves no name behind."""
    for tag in tags:
        print(f"+ docker rmi {tag}", file=sys.stderr)
        try:
            client.images.remove(tag, noprune=True)
        except sdk().errors.APIError:
            pass  # already gone


def _published_tags(plan: BuildPlan, since: float) -> list[str]:
    """The tags Pants applied for the publish registry (not @local), from the docker-info.json
    it wrote after `since` (an older one names an earlier build's tags)."""
    info_path = plan.repo_root / plan.image.docker_info_path
    try:
        if info_path.stat().st_mtime < since:
            return []
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return []
    return [
        tag["name"]
        for entry in info.get("registries", [])
        if entry.get("alias") not in (None, "local")
        for tag in entry.get("tags", [])
    ]


def tag_and_push(
    client: docker.DockerClient, image_id: str, tags: tuple[str, ...], push: bool
) -> None:
    """`docker tag` the image as each of `tags`, then (with `push`) push exactly those. A failed
    push removes the tags this call added, so no name is left on a half-published image."""
    added: list[str] = []
    try:
        for tag in tags:
            reference = references.parse(tag, "--tag", allow_digest=False)
            if _image_id_of(client, tag) != image_id:
                added.append(tag)
            print(f"+ docker tag {image_id} {tag}", file=sys.stderr)
            client.api.tag(image_id, reference.repository, reference.tag_or_latest)
        if push:
            for tag in tags:
                _push(client, tag)
    except (EnvironmentProblem, sdk().errors.APIError):
        _untag(client, added)
        raise


def execute(plan: BuildPlan, host_env: Mapping[str, str]) -> int:
    """Run the plan: ./pants, then the docker steps Pants cannot do."""
    if not (plan.repo_root / PANTS_LAUNCHER).is_file():
        raise EnvironmentProblem(f"no {PANTS_LAUNCHER} launcher in {plan.repo_root}")
    client = connect()  # Pants' docker build needs the engine too; fail early and clearly
    for address in plan.registries_to_check:
        registry.check_reachable(address)
    previous_latest = (
        _image_id_of(client, plan.image.latest_tag) if plan.keep_previous_latest else None
    )

    env = {**host_env, **dict(plan.knob_env)}
    printable = " ".join(
        [
            *(f"{n}={shlex.quote(v)}" for n, v in plan.knob_env),
            shlex.join(plan.pants_argv),
        ]
    )
    print(f"+ {printable}", file=sys.stderr)
    started = time.time()
    completed = subprocess.run(plan.pants_argv, cwd=plan.repo_root, env=env, check=False)
    if completed.returncode != 0:
        if plan.publish_with_pants:
            # The image built but a push failed: drop the registry's names Pants gave it.
            _untag(client, _published_tags(plan, started))
        return completed.returncode

    try:
        if plan.extra_tags:
            info_path = plan.repo_root / plan.image.docker_info_path
            try:
                image_id = json.loads(info_path.read_text())["image_id"]
            except (OSError, ValueError, KeyError) as error:
                raise EnvironmentProblem(
                    f"cannot read the built image id from {info_path}: {one_line(error)}"
                ) from error
            tag_and_push(client, image_id, plan.extra_tags, plan.push)
        if plan.keep_previous_latest:
            latest = references.parse(plan.image.latest_tag, "latest tag")
            if previous_latest:
                print(f"+ docker tag {previous_latest} {latest}", file=sys.stderr)
                client.api.tag(previous_latest, latest.repository, latest.tag_or_latest)
            else:
                print(f"+ docker rmi {latest}", file=sys.stderr)
                client.images.remove(str(latest))
    except sdk().errors.APIError as error:
        raise EnvironmentProblem(
            f"docker refused a post-build step: {one_line(error.explanation or error)}"
        ) from error
    return 0


def command(args: argparse.Namespace) -> int:
    plan = plan_build(args, Path.cwd(), os.getuid(), os.getgid(), os.environ)
    if args.dry_run:
        print(plan.shell_script(Path.cwd()))
        return 0
    return execute(plan, os.environ)
