"""`dynamo-images run`: upstream run.sh's flags and fixed options, through the Docker SDK.

One RunPlan is built from the command line. Its `options()` are the one rendering of the plan:
`--dry-run` prints them as a `docker run` command (after the host steps a real run takes first,
such as creating the Hugging Face cache directory), and a real run folds the same options into the
Docker SDK's keyword arguments through SDK_OPTIONS, one entry per docker flag. A flag without an
entry there fails every test, so the two renderings cannot drift apart; tests/cli compares the
containers the docker CLI and the SDK create from them on a real engine.
"""

from __future__ import annotations

import argparse
import csv
import os
import pwd
import re
import select
import shlex
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from dynamo_images.cli import images, references
from dynamo_images.cli.engine import connect, one_line, sdk
from dynamo_images.cli.errors import EnvironmentProblem, UsageError
from dynamo_images.cli.integers import parse_int
from dynamo_images.cli.workspace import find_repo_root

if TYPE_CHECKING:
    import docker

# Options upstream run.sh passes on every run. Note that with `--ipc host` Docker bind-mounts the
# host's /dev/shm, so --shm-size only takes effect if --ipc is ever changed; both are kept for
# parity with upstream.
SHM_SIZE = "10G"
IPC_MODE = "host"
ULIMITS = ("memlock=-1", "stack=67108864", "nofile=65536:65536")
ULIMIT_NAMES = (
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
)
ALWAYS_ADDED_CAPS = ("CAP_SYS_PTRACE",)
DEFAULT_WORKDIR = "/workspace"
DEFAULT_NETWORK = "host"
DEFAULT_GPUS = "all"
NO_GPUS = "none"
NO_HF_CACHE = "none"
# As upstream: GPU runs use the nvidia runtime unless --runtime says otherwise; --gpus none
# drops it.
NVIDIA_RUNTIME = "nvidia"

# --mount-workspace, as upstream: the checkout at /workspace, host /tmp and /mnt, HF_TOKEN passed.
# (Upstream stopped making it privileged in January 2026, ai-dynamo/dynamo#5644; so do we.)
WORKSPACE_MOUNT_POINT = "/workspace"
WORKSPACE_EXTRA_MOUNTS = ("/tmp:/tmp", "/mnt:/mnt")
WORKSPACE_PASSED_ENV = ("HF_TOKEN",)

# --use-nixl-gds, as upstream: udev database for GPUDirect Storage, pinned memory, and /tmp
# (KVBM's disk pools live there and GDS needs it mounted).
NIXL_GDS_MOUNTS = ("/run/udev:/run/udev:ro",)
NIXL_GDS_TMP_MOUNT = "/tmp:/tmp"
NIXL_GDS_CAPS = ("IPC_LOCK",)

ROOT_USERS = ("root", "0")
ROOT_GROUP = "0"
# The docker engine's rule for container names (daemon/names.go).
CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", re.ASCII)
STEP_SEPARATOR = " && "


def parse_bool(value: str) -> bool:
    """Upstream's --privileged/--rm take TRUE/FALSE; accept the usual spellings of both."""
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"'{value}' is not a boolean; accepted: true, false")


def non_empty(value: str) -> str:
    # Upstream treats an empty value like a missing one (`[ "$2" ]`).
    if value == "":
        raise argparse.ArgumentTypeError("requires a non-empty argument")
    return value


# Options that may be given many times, each adding one value: flags, dest, metavar, help.
REPEATABLE_OPTIONS: tuple[tuple[tuple[str, ...], str, str, str], ...] = (
    (("-v",), "volumes", "SRC:DST[:OPTS]", "add a volume mount"),
    (("-p", "--port"), "ports", "[IP:]HOST:CONTAINER[/PROTO]", "publish a port"),
    (("-e",), "env", "NAME[=VALUE]", "set an environment variable"),
    (
        ("--ulimit",),
        "ulimits",
        "NAME=SOFT[:HARD]",
        "replace a fixed ulimit (memlock=-1, stack=67108864, nofile=65536:65536) or add one; "
        "for engines that may not raise limits that far",
    ),
)


class _RefuseShortInteractive(argparse.Action):
    def __call__(self, *args: object, **kwargs: object) -> NoReturn:
        raise UsageError("unknown option: -i (for an interactive terminal give -it)")


def add_framework_argument(parser: argparse.ArgumentParser) -> None:
    """--framework, as `run` and `build` both take it."""
    parser.add_argument(
        "--framework",
        type=non_empty,
        help=f"one of {images.accepted_frameworks()} (default: {images.DEFAULT_FRAMEWORK})",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image",
        type=non_empty,
        help="image to run (default: dynamo:latest-<framework>-<target>)",
    )
    add_framework_argument(parser)
    parser.add_argument(
        "--target",
        type=non_empty,
        help=f"one of {', '.join(images.RUN_TARGETS)}, or runtime-aws/dev-aws for EFA images "
        f"(default: {images.DEFAULT_TARGET}, as upstream); "
        "with --image it still says which user the image runs as",
    )
    parser.add_argument("--name", type=non_empty, help="container name")
    parser.add_argument(
        "--hf-cache",
        "--hf-home",
        dest="hf_cache",
        type=non_empty,
        metavar="DIR|none",
        help="host directory mounted as the container user's Hugging Face home "
        "(default: $HF_HOME, else ~/.cache/huggingface; 'none' mounts nothing)",
    )
    parser.add_argument(
        "--gpus",
        type=non_empty,
        default=DEFAULT_GPUS,
        help="GPUs to request, docker syntax "
        "(default: all; 'none' requests none and drops --runtime)",
    )
    parser.add_argument("--runtime", type=non_empty, help="container runtime, e.g. nvidia")
    parser.add_argument("--entrypoint", type=non_empty, help="override the image entrypoint")
    parser.add_argument(
        "--workdir",
        type=non_empty,
        default=DEFAULT_WORKDIR,
        help=f"working directory in the container (default: {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--privileged",
        type=parse_bool,
        nargs="?",
        const=True,
        metavar="TRUE|FALSE",
        help="privileged mode (default: false)",
    )
    parser.add_argument(
        "--rm",
        type=parse_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="TRUE|FALSE",
        help="remove the container when it exits (default: true)",
    )
    for flags, dest, metavar, help_text in REPEATABLE_OPTIONS:
        parser.add_argument(
            *flags,
            dest=dest,
            action="append",
            default=[],
            type=non_empty,
            metavar=metavar,
            help=f"{help_text} (repeatable)",
        )
    parser.add_argument(
        "-it",
        dest="interactive",
        action="store_true",
        help="interactive, with a terminal",
    )
    # argparse would take -i as an abbreviation of -it; upstream rejects it, and so do we.
    parser.add_argument("-i", nargs=0, action=_RefuseShortInteractive, help=argparse.SUPPRESS)
    parser.add_argument(
        "--mount-workspace",
        action="store_true",
        help="mount this checkout at /workspace, plus /tmp and /mnt, and pass HF_TOKEN",
    )
    parser.add_argument(
        "--use-nixl-gds",
        action="store_true",
        help="add the mounts and capability GPUDirect Storage needs",
    )
    parser.add_argument(
        "--network",
        type=non_empty,
        default=DEFAULT_NETWORK,
        help=f"network mode (default: {DEFAULT_NETWORK})",
    )
    parser.add_argument(
        "--user",
        type=non_empty,
        help="user[:group] to run as; non-root users also get group 0",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the docker run command instead of running it",
    )


@dataclass(frozen=True)
class HostDir:
    """A host directory a run creates before starting the container, so that dockerd does not
    create it (as root, which the image's UID 1000 user could not write to)."""

    path: str
    # Given to the directory when it is created: set when root runs a container whose user is not.
    owner: tuple[int, int] | None = None

    def shell_command(self) -> str:
        quoted = shlex.quote(self.path)
        make = f"mkdir -p -- {quoted}"
        if self.owner is None:
            return make
        uid, gid = self.owner
        return f"{{ [ -d {quoted} ] || {{ {make} && chown {uid}:{gid} -- {quoted}; }}; }}"

    def create(self) -> None:
        if os.path.isdir(self.path):
            return
        try:
            os.makedirs(self.path, exist_ok=True)
            if self.owner is not None:
                os.chown(self.path, *self.owner)
        except OSError as error:
            raise EnvironmentProblem(f"cannot create {self.path}: {error.strerror}") from error


@dataclass(frozen=True)
class GpuRequest:
    """docker's `--gpus` value, parsed (the SDK's DeviceRequest fields)."""

    driver: str
    count: int
    device_ids: tuple[str, ...]
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class UlimitSpec:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class RunPlan:
    """Everything one `docker run` needs, in docker CLI terms; rendered by `options()`."""

    image: str
    image_ref: images.ImageRef | None  # set when the image is one this repository builds
    command: tuple[str, ...] = ()
    gpus: str | None = DEFAULT_GPUS
    interactive: bool = False
    remove: bool = True
    network: str = DEFAULT_NETWORK
    runtime: str | None = None
    ulimits: tuple[str, ...] = ULIMITS
    environment: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    workdir: str = DEFAULT_WORKDIR
    extra_caps: tuple[str, ...] = ()
    privileged: bool = False
    user: str | None = None
    group_add: tuple[str, ...] = ()
    name: str | None = None
    entrypoint: str | None = None
    host_dirs: tuple[HostDir, ...] = ()

    def options(self) -> list[tuple[str, str | None]]:
        """The docker run options as (flag, value or None), in upstream run.sh's order."""
        options: list[tuple[str, str | None]] = []
        if self.gpus is not None:
            options.append(("--gpus", self.gpus))
        if self.interactive:
            options.append(("-it", None))
        if self.remove:
            options.append(("--rm", None))
        options.append(("--network", self.network))
        if self.runtime:
            options.append(("--runtime", self.runtime))
        options.append(("--shm-size", SHM_SIZE))
        options += [("--ulimit", ulimit) for ulimit in self.ulimits]
        options += [("-e", variable) for variable in self.environment]
        options += [("-v", volume) for volume in self.volumes]
        options += [("-p", port) for port in self.ports]
        options.append(("-w", self.workdir))
        options += [("--cap-add", cap) for cap in (*ALWAYS_ADDED_CAPS, *self.extra_caps)]
        options.append(("--ipc", IPC_MODE))
        if self.privileged:
            options.append(("--privileged", None))
        if self.user:
            options.append(("--user", self.user))
        options += [("--group-add", group) for group in self.group_add]
        if self.name:
            options.append(("--name", self.name))
        if self.entrypoint:
            options.append(("--entrypoint", self.entrypoint))
        return options

    def docker_argv(self) -> list[str]:
        """The equivalent docker CLI command."""
        argv = ["docker", "run"]
        for flag, value in self.options():
            if value is None:
                argv.append(flag)
            elif flag in JOINED_FLAGS:
                argv.append(f"{flag}={value}")
            else:
                argv += [flag, value]
        return [*argv, self.image, *self.command]

    def shell_script(self) -> str:
        """What a real run does, as one shell command: host steps first, then docker run."""
        steps = [directory.shell_command() for directory in self.host_dirs]
        return STEP_SEPARATOR.join([*steps, shlex.join(self.docker_argv())])

    def sdk_kwargs(self, host_env: Mapping[str, str]) -> dict[str, Any]:
        """Keyword arguments for `client.containers.create(image, command, **kwargs)`: the same
        options() folded through SDK_OPTIONS."""
        kwargs: dict[str, Any] = {}
        for flag, value in self.options():
            SDK_OPTIONS[flag](kwargs, value, host_env)
        if "ports" in kwargs:
            kwargs["ports"] = parse_port_bindings(tuple(kwargs["ports"]))
        return kwargs


# Options the docker CLI spells as one word, as upstream does.
JOINED_FLAGS = ("--shm-size",)
SdkSetter = Callable[[dict[str, Any], "str | None", Mapping[str, str]], None]


def _set(keyword: str, convert: Callable[[str], Any] = str) -> SdkSetter:
    def setter(kwargs: dict[str, Any], value: str | None, host_env: Mapping[str, str]) -> None:
        assert value is not None
        kwargs[keyword] = convert(value)

    return setter


def _append(keyword: str, convert: Callable[[str], Any] = str) -> SdkSetter:
    def setter(kwargs: dict[str, Any], value: str | None, host_env: Mapping[str, str]) -> None:
        assert value is not None
        kwargs.setdefault(keyword, []).append(convert(value))

    return setter


def _switch(*keywords: str) -> SdkSetter:
    def setter(kwargs: dict[str, Any], value: str | None, host_env: Mapping[str, str]) -> None:
        kwargs.update(dict.fromkeys(keywords, True))

    return setter


def _environment(kwargs: dict[str, Any], value: str | None, host_env: Mapping[str, str]) -> None:
    assert value is not None
    kwargs.setdefault("environment", []).extend(resolve_environment((value,), host_env))


def _not_for_the_sdk(
    kwargs: dict[str, Any], value: str | None, host_env: Mapping[str, str]
) -> None:
    """--rm: not the daemon-side auto_remove, since the container must outlive its exit long enough
    for its exit code to be read; `execute` removes it afterwards, as the docker CLI does."""


def _device_request(value: str) -> Any:
    request = parse_gpus(value)
    return sdk().types.DeviceRequest(
        driver=request.driver,
        count=request.count,
        device_ids=list(request.device_ids),
        capabilities=[list(request.capabilities)],
    )


def _sdk_ulimit(value: str) -> Any:
    spec = parse_ulimit(value)
    return sdk().types.Ulimit(name=spec.name, soft=spec.soft, hard=spec.hard)


# One entry per flag RunPlan.options() emits: how the SDK says it.
SDK_OPTIONS: dict[str, SdkSetter] = {
    "--gpus": _append("device_requests", _device_request),
    "-it": _switch("stdin_open", "tty"),
    "--rm": _not_for_the_sdk,
    "--network": _set("network_mode"),
    "--runtime": _set("runtime"),
    "--shm-size": _set("shm_size"),
    "--ulimit": _append("ulimits", _sdk_ulimit),
    "-e": _environment,
    "-v": _append("volumes"),
    "-p": _append("ports"),
    "-w": _set("working_dir"),
    "--cap-add": _append("cap_add"),
    "--ipc": _set("ipc_mode"),
    "--privileged": _switch("privileged"),
    "--user": _set("user"),
    "--group-add": _append("group_add"),
    "--name": _set("name"),
    # A list, as the docker CLI sends it: the SDK would shlex-split a plain string.
    "--entrypoint": _set("entrypoint", lambda value: [value]),
}


def parse_ulimit(spec: str) -> UlimitSpec:
    """docker's `--ulimit name=soft[:hard]`; the hard limit defaults to the soft one."""
    name, has_limits, limits = spec.partition("=")
    soft_text, _, hard_text = limits.partition(":")
    if not has_limits or name not in ULIMIT_NAMES:
        raise UsageError(
            f"--ulimit '{spec}' is not NAME=SOFT[:HARD] with NAME one of {', '.join(ULIMIT_NAMES)}"
        )
    soft, hard = parse_int(soft_text), parse_int(hard_text or soft_text)
    if soft is None or hard is None:
        raise UsageError(f"--ulimit '{spec}': limits must be whole numbers (-1 for unlimited)")
    return UlimitSpec(name, soft, hard)


def merge_ulimits(overrides: list[str]) -> tuple[str, ...]:
    """The fixed ulimits with same-named overrides put in their place; new names go last."""
    by_name = {spec.partition("=")[0]: spec for spec in ULIMITS}
    for spec in overrides:
        by_name[parse_ulimit(spec).name] = spec
    return tuple(by_name.values())


def parse_gpus(value: str) -> GpuRequest:
    """docker's `--gpus` syntax (cli/opts/gpus.go): `all`, a count, or CSV of key=value fields."""
    try:
        fields = next(csv.reader([value]))
    except (csv.Error, StopIteration) as error:
        raise UsageError(f"--gpus '{value}' is not valid: {error}") from error
    count: int | None = None
    device_ids: list[str] | None = None
    driver = ""
    capabilities = ["gpu"]
    seen: set[str] = set()
    for item in fields:
        key, has_value, item_value = item.partition("=")
        if key in seen:
            raise UsageError(f"--gpus '{value}' names '{key}' twice")
        seen.add(key)
        if not has_value:
            count = _gpu_count(key, value)
        elif key == "count":
            count = _gpu_count(item_value, value)
        elif key == "device":
            device_ids = item_value.split(",")
        elif key == "driver":
            driver = item_value
        elif key == "capabilities":
            capabilities = [*item_value.split(","), "gpu"]
        else:
            raise UsageError(
                f"--gpus '{value}' has unknown key '{key}'; "
                "accepted: all, N, count=, device=, driver=, capabilities="
            )
    if count is None and device_ids is None:
        count = 1
    return GpuRequest(driver, count or 0, tuple(device_ids or ()), tuple(capabilities))


def _gpu_count(text: str, whole_value: str) -> int:
    if text == "all":
        return -1
    count = parse_int(text)
    if count is None or count < 0:
        raise UsageError(
            f"--gpus '{whole_value}': '{text}' is not a GPU count; "
            "accepted: all, a number, device=ID[,ID...]"
        )
    return count


def parse_port_bindings(specs: tuple[str, ...]) -> dict[str, Any]:
    """docker's `-p [ip:][host_port:]container_port[/proto]` (ranges too) as the SDK's `ports`."""
    bindings: dict[str, list[Any]] = {}
    for spec in specs:
        for container_port, binding in _parse_port_spec(spec):
            bindings.setdefault(container_port, []).append(binding)
    return {port: found[0] if len(found) == 1 else found for port, found in bindings.items()}


PORT_PROTOCOLS = ("tcp", "udp", "sctp")


def _parse_port_spec(spec: str) -> list[tuple[str, Any]]:
    not_a_mapping = f"-p '{spec}' is not a port mapping; expected [IP:]HOST:CONTAINER[/PROTO]"
    body, _, protocol = spec.partition("/")
    protocol = protocol or "tcp"
    if protocol not in PORT_PROTOCOLS:
        raise UsageError(f"-p '{spec}': unknown protocol '{protocol}'; accepted: tcp, udp, sctp")
    host_ip = ""
    if body.startswith("["):  # [IPv6]:host:container
        closing = body.find("]:")
        if closing < 0:
            raise UsageError(not_a_mapping)
        host_ip, body = body[1:closing], body[closing + 2 :]
        parts = body.split(":")
        if len(parts) != 2:
            raise UsageError(not_a_mapping)
        host_ports_text, container_ports_text = parts
    else:
        parts = body.split(":")
        if len(parts) == 1:
            host_ports_text, container_ports_text = "", parts[0]
        elif len(parts) == 2:
            host_ports_text, container_ports_text = parts
        elif len(parts) == 3:
            host_ip, host_ports_text, container_ports_text = parts
        else:
            raise UsageError(not_a_mapping)
    container_ports = _port_range(container_ports_text, spec)
    host_ports: list[int | None] = (
        list(_port_range(host_ports_text, spec))
        if host_ports_text
        else [None] * len(container_ports)
    )
    if len(host_ports) != len(container_ports):
        raise UsageError(f"-p '{spec}': host and container port ranges differ in length")
    result = []
    for host_port, container_port in zip(host_ports, container_ports, strict=True):
        if host_ip:
            binding: Any = (host_ip, host_port) if host_port is not None else (host_ip,)
        else:
            binding = host_port
        result.append((f"{container_port}/{protocol}", binding))
    return result


def _port_range(text: str, spec: str) -> list[int]:
    first, _, last = text.partition("-")
    start, end = parse_int(first), parse_int(last or first)
    if start is None or end is None or not (0 < start <= end <= 65535):
        raise UsageError(f"-p '{spec}': '{text}' is not a port or port range")
    return list(range(start, end + 1))


def resolve_environment(variables: tuple[str, ...], host_env: Mapping[str, str]) -> list[str]:
    """As the docker CLI does: `-e NAME` copies NAME from the host; a NAME unset there is sent
    as it is, which the engine reads as "unset" (removing an image default of that name)."""
    return [
        f"{variable}={host_env[variable]}"
        if "=" not in variable and variable in host_env
        else variable
        for variable in variables
    ]


def _check_variable(variable: str) -> None:
    name = variable.partition("=")[0]
    if not name or name.startswith("-") or any(character.isspace() for character in name):
        raise UsageError(
            f"-e '{variable}': '{name}' is not an environment variable name "
            "(give NAME=VALUE, or NAME to copy it from your environment)"
        )


def _runs_as_root(user: str | None, image_runs_as_root: bool) -> bool:
    if user is None:
        return image_runs_as_root
    return user.split(":", 1)[0] in ROOT_USERS


def _expand_home(path: str, home: str, flag: str) -> str:
    """`~` and `~user` as a shell expands them (the docker CLI does not: the engine would get a
    relative path)."""
    if not path.startswith("~"):
        return path
    user, slash, rest = path[1:].partition("/")
    if not user:
        return home + slash + rest
    try:
        user_home = pwd.getpwnam(user).pw_dir
    except KeyError:
        raise UsageError(f"{flag} '{path}': there is no user '{user}' on this host") from None
    return user_home + slash + rest


def _absolute_host_path(path: str, home: str, cwd: Path, flag: str) -> str:
    path = _expand_home(path, home, flag)
    return os.path.normpath(path) if os.path.isabs(path) else str((cwd / path).resolve())


def _absolutize_volume(spec: str, home: str, cwd: Path) -> str:
    """Make a relative bind source absolute (the engine rejects relative ones).

    Named volumes are kept as they are.
    """
    source, separator, rest = spec.partition(":")
    if separator and (source.startswith((".", "~")) or source in (".", "..")):
        return f"{_absolute_host_path(source, home, cwd, '-v')}:{rest}"
    return spec


def _container_uid(user: str | None) -> int | None:
    """The numeric UID the container runs as, when it is known without asking the image."""
    if user is None:
        return images.CONTAINER_USER_UID
    return parse_int(user.split(":", 1)[0])


def _check_values(args: argparse.Namespace) -> None:
    """Refuse, before any work, values that docker would refuse only after we started."""
    if args.image and not references.is_image_id(args.image):
        references.parse(args.image, "--image")
    if args.name and not CONTAINER_NAME.fullmatch(args.name):
        raise UsageError(
            f"--name '{args.name}' is not a container name: at least two of "
            "a-z A-Z 0-9 _ . -, starting with a letter or digit"
        )
    if not args.workdir.startswith("/"):
        raise UsageError(f"--workdir '{args.workdir}' is not an absolute path in the container")
    for variable in args.env:
        _check_variable(variable)
    if args.user is not None:
        user, has_group, group = args.user.partition(":")
        if not user or (has_group and not group):
            raise UsageError(f"--user '{args.user}' is not USER[:GROUP]")


def plan_run(
    args: argparse.Namespace,
    command: list[str],
    host_env: Mapping[str, str],
    cwd: Path,
    caller_uid: int | None = None,
) -> RunPlan:
    """Turn parsed `run` arguments into a RunPlan, applying upstream's defaults and rules."""
    _check_values(args)
    framework = images.normalize_framework(args.framework or images.DEFAULT_FRAMEWORK)
    target = args.target or images.DEFAULT_TARGET
    requested_ref = images.run_image(framework, target)
    if args.image:
        image = args.image
        # Our own tags say which target they are; a foreign image relies on --target for that.
        image_ref = images.image_for_tag(image)
        user_ref = image_ref or requested_ref
    else:
        image = requested_ref.latest_tag
        image_ref = user_ref = requested_ref
    home = host_env.get("HOME") or str(Path.home())
    caller_uid = os.geteuid() if caller_uid is None else caller_uid

    gpus: str | None = None if args.gpus.lower() == NO_GPUS else args.gpus
    if gpus is not None:
        parse_gpus(gpus)  # reject bad syntax before printing or running anything
    for port in args.ports:
        _parse_port_spec(port)
    runtime = (args.runtime or NVIDIA_RUNTIME) if gpus is not None else None

    environment: list[str] = []
    volumes = [_absolutize_volume(spec, home, cwd) for spec in args.volumes]
    if args.mount_workspace:
        volumes.append(f"{find_repo_root(cwd)}:{WORKSPACE_MOUNT_POINT}")
        volumes += WORKSPACE_EXTRA_MOUNTS

    container_root = _runs_as_root(args.user, user_ref.runs_as_root)
    host_dirs: list[HostDir] = []
    hf_cache = args.hf_cache or host_env.get("HF_HOME") or f"{home}/{images.HF_CACHE_UNDER_HOME}"
    if hf_cache.lower() != NO_HF_CACHE:
        hf_host_dir = _absolute_host_path(hf_cache, home, cwd, "--hf-cache")
        container_home = images.ROOT_HOME if container_root else images.CONTAINER_USER_HOME
        hf_container_dir = f"{container_home}/{images.HF_CACHE_UNDER_HOME}"
        volumes.append(f"{hf_host_dir}:{hf_container_dir}")
        # Ours goes first so that a user's own `-e HF_HOME=...` still wins.
        environment.append(f"HF_HOME={hf_container_dir}")
        # Root creating it for a non-root container user hands it to that user (group 0, as the
        # images' files); anyone else creates it as themselves, as upstream's `mkdir -p` does.
        container_uid = _container_uid(args.user)
        owner = (
            (container_uid, int(ROOT_GROUP))
            if caller_uid == 0 and not container_root and container_uid is not None
            else None
        )
        host_dirs.append(HostDir(hf_host_dir, owner))

    environment += args.env
    if args.mount_workspace:
        environment += WORKSPACE_PASSED_ENV

    extra_caps: list[str] = []
    if args.use_nixl_gds:
        volumes += NIXL_GDS_MOUNTS
        if not args.mount_workspace:
            volumes.append(NIXL_GDS_TMP_MOUNT)
        extra_caps += NIXL_GDS_CAPS

    group_add: tuple[str, ...] = ()
    if args.user and not _runs_as_root(args.user, False):
        # The images keep their files group-0 writable (OpenShift style); group 0 grants access.
        group_add = (ROOT_GROUP,)

    return RunPlan(
        image=image,
        image_ref=image_ref,
        command=tuple(command),
        gpus=gpus,
        interactive=args.interactive,
        remove=args.rm,
        network=args.network,
        runtime=runtime,
        ulimits=merge_ulimits(args.ulimits),
        environment=tuple(environment),
        volumes=tuple(volumes),
        ports=tuple(args.ports),
        workdir=args.workdir,
        extra_caps=tuple(extra_caps),
        privileged=bool(args.privileged),
        user=args.user,
        group_add=group_add,
        name=args.name,
        entrypoint=args.entrypoint,
        host_dirs=tuple(host_dirs),
    )


def check_engine_runtimes(plan: RunPlan, engine_info: Mapping[str, Any]) -> None:
    """Refuse a runtime the engine lacks, saying what gives GPU runs the nvidia one."""
    runtimes = sorted(engine_info.get("Runtimes") or {})
    listed = ", ".join(runtimes) or "none"
    if plan.runtime is None or plan.runtime in runtimes:
        return
    if plan.runtime == NVIDIA_RUNTIME and plan.gpus is not None:
        raise EnvironmentProblem(
            f"--gpus {plan.gpus} runs with the '{NVIDIA_RUNTIME}' runtime, which the Docker engine "
            f"lacks (it has: {listed}); install the NVIDIA Container Toolkit, or pass --gpus none"
        )
    raise EnvironmentProblem(
        f"--runtime {plan.runtime}: the Docker engine has no such runtime (it has: {listed})"
    )


def missing_image_message(plan: RunPlan) -> str:
    if plan.image_ref is not None:
        return (
            f"image {plan.image} is not built; "
            f"build it with: ./pants package {plan.image_ref.pants_address}"
        )
    return f"image {plan.image} is not in the Docker engine"


def _ensure_image(client: docker.DockerClient, plan: RunPlan) -> None:
    errors = sdk().errors
    try:
        client.images.get(plan.image)
        return
    except errors.ImageNotFound:
        pass
    if plan.image_ref is not None:
        # Our images come from `./pants package`, never from a registry.
        raise EnvironmentProblem(missing_image_message(plan))
    # Anything else is pulled, as `docker run` would.
    reference = references.parse(plan.image, "--image")
    try:
        client.images.pull(reference.repository, tag=reference.digest or reference.tag_or_latest)
    except errors.APIError as error:
        raise EnvironmentProblem(
            f"{missing_image_message(plan)} and could not be pulled: "
            f"{one_line(error.explanation or error)}"
        ) from error


def start_failure_message(plan: RunPlan, reason: str) -> str:
    message = f"docker could not start {plan.image}: {reason}"
    if "rlimit" in reason:
        # Engines without CAP_SYS_RESOURCE (e.g. inside another container) cannot raise limits.
        message += (
            f"; the engine cannot grant --ulimit {' '.join(plan.ulimits)}: "
            "lower them with --ulimit NAME=SOFT[:HARD]"
        )
    return message


class _Terminated(Exception):
    """SIGTERM arrived; raised so that cleanup in `finally` still runs."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


def execute(plan: RunPlan, host_env: Mapping[str, str]) -> int:
    """Run the plan on the engine; return the container's exit code."""
    if plan.interactive and not sys.stdin.isatty():
        raise EnvironmentProblem(
            "-it needs a terminal on standard input; drop -it to run without one"
        )
    client = connect()
    errors = sdk().errors
    check_engine_runtimes(plan, client.info())
    _ensure_image(client, plan)
    for directory in plan.host_dirs:
        directory.create()

    previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
    container = None
    try:
        # What client.containers.run(detach=True) does, taken apart as the docker CLI does it:
        # attach before start so that no output is lost (attaching to an already exited container
        # can block), and keep hold of a container that was created but failed to start, so
        # that it is still removed.
        try:
            container = client.containers.create(
                plan.image, list(plan.command) or None, **plan.sdk_kwargs(host_env)
            )
            container_id = str(container.id)  # a created container always has one
            if plan.interactive:
                attached = client.api.attach_socket(
                    container_id,
                    params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1},
                )
            else:
                output = client.api.attach(
                    container_id, stdout=True, stderr=True, stream=True, demux=True
                )
            container.start()
        except errors.APIError as error:
            raise EnvironmentProblem(
                start_failure_message(plan, one_line(error.explanation or error))
            ) from error
        try:
            if plan.interactive:
                _relay_terminal(client, container_id, attached)
            else:
                _relay_output(output)
            return int(container.wait()["StatusCode"])
        except (KeyboardInterrupt, _Terminated):
            container.stop(timeout=10)
            return 130
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        if container is not None and plan.remove:
            try:
                container.remove(force=True)
            except errors.NotFound:
                pass


def _relay_output(stream: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    for out_chunk, err_chunk in stream:
        if out_chunk:
            sys.stdout.buffer.write(out_chunk)
            sys.stdout.buffer.flush()
        if err_chunk:
            sys.stderr.buffer.write(err_chunk)
            sys.stderr.buffer.flush()


def _relay_terminal(client: docker.DockerClient, container_id: str, attached: Any) -> None:
    """Connect our terminal to the container's TTY in raw mode, as `docker run -it` does."""
    import termios
    import tty

    connection: socket.socket = getattr(attached, "_sock", attached)
    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()

    def resize(*_: object) -> None:
        try:
            size = os.get_terminal_size(stdout_fd)
            client.api.resize(container_id, height=size.lines, width=size.columns)
        except (OSError, sdk().errors.APIError):
            pass  # not a terminal, or the container already exited

    saved_terminal = termios.tcgetattr(stdin_fd)
    previous_winch = signal.signal(signal.SIGWINCH, resize)
    resize()
    readers: list[Any] = [connection, stdin_fd]
    try:
        tty.setraw(stdin_fd)
        while True:
            readable, _, _ = select.select(readers, [], [])
            if connection in readable:
                data = connection.recv(65536)
                if not data:
                    return
                os.write(stdout_fd, data)
            if stdin_fd in readable:
                data = os.read(stdin_fd, 65536)
                if data:
                    connection.sendall(data)
                else:
                    readers.remove(stdin_fd)
                    connection.shutdown(socket.SHUT_WR)
    finally:
        termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved_terminal)
        signal.signal(signal.SIGWINCH, previous_winch)
        attached.close()


def command(args: argparse.Namespace, container_command: list[str]) -> int:
    plan = plan_run(args, container_command, os.environ, Path.cwd())
    if args.dry_run:
        print(plan.shell_script())
        return 0
    return execute(plan, os.environ)
