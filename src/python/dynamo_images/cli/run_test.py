from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from dynamo_images.cli import run
from dynamo_images.cli.conftest import (
    Checkout,
    dry_run_argv,
    dry_run_words,
    run_cli,
    usage_error,
)
from dynamo_images.cli.errors import EnvironmentProblem, UsageError
from dynamo_images.cli.main import make_parser

FIXED_OPTIONS = [
    "--shm-size=10G",
    "--ulimit",
    "memlock=-1",
    "--ulimit",
    "stack=67108864",
    "--ulimit",
    "nofile=65536:65536",
]

AWKWARD_VALUE = """it's a "quoted" value with  spaces, $HOME and `ticks`"""


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == option]


def plan_for(*argv: str, command: tuple[str, ...] = ()) -> run.RunPlan:
    args = make_parser().parse_args(["run", *argv])
    return run.plan_run(args, list(command), os.environ, Path.cwd())


def test_defaults_match_upstream_run_sh(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    hf_dir = f"{checkout.home}/.cache/huggingface"
    assert dry_run_argv(capsys) == [
        "docker",
        "run",
        "--gpus",
        "all",
        "--rm",
        "--network",
        "host",
        "--runtime",
        "nvidia",
        *FIXED_OPTIONS,
        "-e",
        "HF_HOME=/root/.cache/huggingface",
        "-v",
        f"{hf_dir}:/root/.cache/huggingface",
        "-w",
        "/workspace",
        "--cap-add",
        "CAP_SYS_PTRACE",
        "--ipc",
        "host",
        "dynamo:latest-vllm-dev",
    ]


@pytest.mark.parametrize(
    ("flags", "image"),
    [
        (["--framework", "sglang"], "dynamo:latest-sglang-dev"),
        (
            ["--framework", "none", "--target", "runtime"],
            "dynamo:latest-dynamo-runtime",
        ),
        (
            ["--framework", "TRTLLM", "--target", "local-dev"],
            "dynamo:latest-trtllm-local-dev",
        ),
        (["--target", "runtime-aws"], "dynamo:latest-vllm-runtime-aws"),
        (
            ["--image", "registry.example:5000/team/dynamo:my-tag"],
            "registry.example:5000/team/dynamo:my-tag",
        ),
    ],
)
def test_image_follows_framework_and_target(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], flags: list[str], image: str
) -> None:
    argv = dry_run_argv(capsys, "--hf-cache", "none", *flags)
    assert argv[-1] == image


@pytest.mark.parametrize(
    ("flags", "container_home"),
    [
        ([], "/root"),  # dev runs as root
        (["--target", "runtime"], "/home/dynamo"),
        (["--target", "local-dev"], "/home/dynamo"),
        (["--target", "dev", "--user", "dynamo"], "/home/dynamo"),
        (["--target", "runtime", "--user", "root"], "/root"),
        (["--target", "runtime", "--user", "0:0"], "/root"),
        (
            ["--image", "dynamo:latest-sglang-runtime"],
            "/home/dynamo",
        ),  # our tag tells the target
        (["--image", "someone/else:1", "--target", "runtime"], "/home/dynamo"),
        (["--image", "someone/else:1"], "/root"),
    ],
)
def test_hf_cache_lands_in_the_container_users_home(
    checkout: Checkout,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    container_home: str,
) -> None:
    argv = dry_run_argv(capsys, *flags)
    hf_home = f"{container_home}/.cache/huggingface"
    assert f"HF_HOME={hf_home}" in option_values(argv, "-e")
    assert f"{checkout.home}/.cache/huggingface:{hf_home}" in option_values(argv, "-v")


def test_hf_cache_choices(
    checkout: Checkout,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = dry_run_argv(capsys, "--hf-home", "models dir", "--target", "runtime")
    assert f"{checkout.repo}/models dir:/home/dynamo/.cache/huggingface" in option_values(
        argv, "-v"
    )

    argv = dry_run_argv(capsys, "--hf-cache", "~/hf", "--target", "runtime")
    assert f"{checkout.home}/hf:/home/dynamo/.cache/huggingface" in option_values(argv, "-v")

    monkeypatch.setenv("HF_HOME", "/srv/hf")
    argv = dry_run_argv(capsys, "--target", "runtime")
    assert "/srv/hf:/home/dynamo/.cache/huggingface" in option_values(argv, "-v")

    argv = dry_run_argv(capsys, "--hf-cache", "NONE")
    assert option_values(argv, "-v") == []
    assert option_values(argv, "-e") == []


def test_value_flags_reach_the_command(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = dry_run_argv(
        capsys,
        "--hf-cache",
        "none",
        "--name",
        "my.box_1",
        "--entrypoint",
        "/bin/my entry",
        "--workdir",
        "/work dir",
        "--network",
        "bridge",
        "--runtime",
        "nvidia",
        "--gpus",
        '"device=0,2"',
    )
    assert argv == [
        "docker",
        "run",
        "--gpus",
        '"device=0,2"',
        "--rm",
        "--network",
        "bridge",
        "--runtime",
        "nvidia",
        *FIXED_OPTIONS,
        "-w",
        "/work dir",
        "--cap-add",
        "CAP_SYS_PTRACE",
        "--ipc",
        "host",
        "--name",
        "my.box_1",
        "--entrypoint",
        "/bin/my entry",
        "dynamo:latest-vllm-dev",
    ]


def test_gpus_none_drops_the_gpu_request_and_the_runtime(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = dry_run_argv(capsys, "--hf-cache", "none", "--gpus", "none", "--runtime", "nvidia")
    assert "--gpus" not in argv
    assert "--runtime" not in argv
    assert plan_for("--gpus", "NONE").gpus is None


def test_repeatable_flags_keep_order_and_quoting(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = dry_run_argv(
        capsys,
        "--hf-cache",
        "none",
        "-e",
        f"FIRST={AWKWARD_VALUE}",
        "-e",
        "FROM_HOST",
        "-e",
        "EMPTY=",
        "-v",
        "/data/my models:/models:ro",
        "-v",
        "./relative dir:/rel",
        "-v",
        "named_volume:/vol",
        "-p",
        "8000:8000",
        "--port",
        "127.0.0.1:9090:9090/udp",
    )
    assert option_values(argv, "-e") == [
        f"FIRST={AWKWARD_VALUE}",
        "FROM_HOST",
        "EMPTY=",
    ]
    assert option_values(argv, "-v") == [
        "/data/my models:/models:ro",
        f"{checkout.repo}/relative dir:/rel",
        "named_volume:/vol",
    ]
    assert option_values(argv, "-p") == ["8000:8000", "127.0.0.1:9090:9090/udp"]


def test_container_command_after_double_dash_is_kept_verbatim(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["bash", "-c", f"echo {AWKWARD_VALUE!r} -- done", "--", "--rm", "-e"]
    argv = dry_run_argv(capsys, "--hf-cache", "none", "--", *command)
    assert argv[argv.index("dynamo:latest-vllm-dev") + 1 :] == command


def test_switches(checkout: Checkout, capsys: pytest.CaptureFixture[str]) -> None:
    argv = dry_run_argv(capsys, "--hf-cache", "none", "-it", "--privileged", "--rm", "false")
    assert argv[:6] == ["docker", "run", "--gpus", "all", "-it", "--network"]
    assert "--privileged" in argv
    assert "--rm" not in argv
    # Upstream's spelling with an explicit value.
    argv = dry_run_argv(capsys, "--hf-cache", "none", "--privileged", "TRUE", "--rm", "TRUE")
    assert "--privileged" in argv and "--rm" in argv


def test_mount_workspace_mirrors_upstream(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    subdirectory = checkout.repo / "docker" / "vllm"
    subdirectory.mkdir(parents=True, exist_ok=True)
    os.chdir(subdirectory)  # the checkout is found from anywhere inside it
    argv = dry_run_argv(capsys, "--mount-workspace", "--target", "runtime")
    assert option_values(argv, "-v") == [
        f"{checkout.repo}:/workspace",
        "/tmp:/tmp",
        "/mnt:/mnt",
        f"{checkout.home}/.cache/huggingface:/home/dynamo/.cache/huggingface",
    ]
    assert option_values(argv, "-e") == [
        "HF_HOME=/home/dynamo/.cache/huggingface",
        "HF_TOKEN",
    ]
    # Upstream dropped the --privileged default of --mount-workspace (ai-dynamo/dynamo#5644).
    assert "--privileged" not in argv
    assert "--privileged" in dry_run_argv(capsys, "--mount-workspace", "--privileged")


def test_mount_workspace_outside_the_checkout_is_an_environment_error(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    os.chdir(tmp_path)
    message = usage_error(capsys, "run", "--dry-run", "--mount-workspace", exit_code=1)
    assert message.startswith(
        f"not inside the dynamo-images checkout: no pants.toml in {tmp_path.resolve()} or above"
    )


def test_use_nixl_gds(checkout: Checkout, capsys: pytest.CaptureFixture[str]) -> None:
    argv = dry_run_argv(capsys, "--hf-cache", "none", "--use-nixl-gds")
    assert option_values(argv, "-v") == ["/run/udev:/run/udev:ro", "/tmp:/tmp"]
    assert option_values(argv, "--cap-add") == ["CAP_SYS_PTRACE", "IPC_LOCK"]
    # With --mount-workspace, /tmp is already mounted once.
    argv = dry_run_argv(capsys, "--hf-cache", "none", "--use-nixl-gds", "--mount-workspace")
    assert option_values(argv, "-v").count("/tmp:/tmp") == 1


@pytest.mark.parametrize(
    ("user", "group_add"),
    [
        ("1000", ["0"]),
        ("dynamo:0", ["0"]),
        ("4321:4321", ["0"]),
        ("root", []),
        ("0", []),
        ("0:1000", []),
    ],
)
def test_user_and_group_zero(
    checkout: Checkout,
    capsys: pytest.CaptureFixture[str],
    user: str,
    group_add: list[str],
) -> None:
    argv = dry_run_argv(capsys, "--hf-cache", "none", "--user", user)
    assert option_values(argv, "--user") == [user]
    assert option_values(argv, "--group-add") == group_add


def test_printed_command_runs_as_printed(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Feed the dry-run line to a real shell, `docker` being a script that records its argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorder = bin_dir / "docker"
    recorder.write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$ARGV_FILE"\n')
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    argv_file = tmp_path / "argv"
    cli_argv = [
        "run",
        "--dry-run",
        "--name",
        "box",
        "-e",
        f"X={AWKWARD_VALUE}",
        "-v",
        "/a b:/c d",
        "--user",
        "1000",
        "--",
        "sh",
        "-c",
        AWKWARD_VALUE,
    ]
    code, out, _ = run_cli(capsys, *cli_argv)
    assert code == 0
    subprocess.run(
        ["sh", "-c", out],
        check=True,
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "ARGV_FILE": str(argv_file),
        },
    )
    received = argv_file.read_bytes().split(b"\0")[:-1]
    expected = run.plan_run(
        make_parser().parse_args(cli_argv[:-4]),
        ["sh", "-c", AWKWARD_VALUE],
        os.environ,
        Path.cwd(),
    )
    assert [word.decode() for word in received] == expected.docker_argv()[1:]


def every_option_plan(checkout: Checkout) -> run.RunPlan:
    """A plan that uses every option RunPlan can render."""
    return plan_for(
        "--target",
        "runtime",
        "--name",
        "box",
        "--entrypoint",
        "/bin/entry point",
        "--gpus",
        '"device=0,2",capabilities=compute',
        "-it",
        "--privileged",
        "-e",
        "SET=1",
        "-e",
        "FROM_HOST",
        "-v",
        "/a:/b:ro",
        "-p",
        "8000:8000",
        "--ulimit",
        "nofile=1024:4096",
        "--user",
        "1000",
        "--use-nixl-gds",
        "--network",
        "bridge",
        command=("python3", "-c", "print(1)"),
    )


def test_every_rendered_option_has_an_sdk_translation(checkout: Checkout) -> None:
    """Both ways: each flag options() emits has an SDK_OPTIONS entry (else sdk_kwargs raises
    KeyError), and each entry is used. tests/cli/run_parity_integration_test.py shows on a real
    engine that the two make the same container."""
    plan = every_option_plan(checkout)
    emitted = {flag for flag, _ in plan.options()}
    assert emitted == set(run.SDK_OPTIONS)
    plan.sdk_kwargs({"FROM_HOST": "x"})


def test_sdk_kwargs_follow_the_rendered_options(checkout: Checkout) -> None:
    plan = every_option_plan(checkout)
    kwargs = plan.sdk_kwargs({"FROM_HOST": "host value"})
    # Values the SDK takes in another shape than the CLI: each follows the plan, not a literal.
    assert kwargs["entrypoint"] == [plan.entrypoint]
    assert kwargs["environment"][-2:] == ["SET=1", "FROM_HOST=host value"]
    assert [u["Name"] for u in kwargs["ulimits"]] == [u.partition("=")[0] for u in plan.ulimits]
    assert kwargs["device_requests"][0]["DeviceIDs"] == ["0", "2"]
    assert kwargs["ports"] == {"8000/tcp": 8000}
    assert (kwargs["stdin_open"], kwargs["tty"], kwargs["privileged"]) == (True, True, True)
    # --rm is ours to honour (the exit code is read first), never the daemon's auto_remove.
    assert "auto_remove" not in kwargs
    assert "--rm" in plan.docker_argv()


def test_gpu_runs_default_to_the_nvidia_runtime(checkout: Checkout) -> None:
    assert plan_for().runtime == "nvidia"
    assert plan_for("--runtime", "runc").runtime == "runc"
    assert plan_for("--gpus", "none").runtime is None


def test_dry_run_creates_the_hf_cache_first_as_the_real_run_does(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    hf_dir = tmp_path / "new hf" / "cache"
    words = dry_run_words(capsys, "--target", "runtime", "--hf-cache", str(hf_dir))
    # (As root the mkdir also hands the directory to the container user: see the next test.)
    mkdir = words.index("mkdir")
    assert words[mkdir : mkdir + 4] == ["mkdir", "-p", "--", str(hf_dir)]
    assert mkdir < words.index("docker")
    assert [
        d.path for d in plan_for("--target", "runtime", "--hf-cache", str(hf_dir)).host_dirs
    ] == [str(hf_dir)]
    assert plan_for("--hf-cache", "none").host_dirs == ()


def test_root_creates_the_hf_cache_for_the_container_user(
    checkout: Checkout, tmp_path: Path
) -> None:
    def host_dirs(*argv: str) -> tuple[run.HostDir, ...]:
        args = make_parser().parse_args(["run", "--hf-cache", str(tmp_path / "hf"), *argv])
        return run.plan_run(args, [], os.environ, Path.cwd(), caller_uid=0).host_dirs

    assert host_dirs("--target", "runtime")[0].owner == (1000, 0)
    assert host_dirs("--target", "runtime", "--user", "4321")[0].owner == (4321, 0)
    assert host_dirs("--target", "dev")[0].owner is None  # root in the container
    assert host_dirs("--target", "runtime", "--user", "somebody")[0].owner is None  # unknown UID
    directory = host_dirs("--target", "runtime")[0]
    assert directory.shell_command() == (
        f"{{ [ -d {directory.path} ] || {{ mkdir -p -- {directory.path} && "
        f"chown 1000:0 -- {directory.path}; }}; }}"
    )


def test_printed_host_steps_do_what_the_real_run_does(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The dry run's mkdir, pasted into a shell, leaves what HostDir.create() leaves."""
    pasted, created = tmp_path / "pasted" / "hf", tmp_path / "created" / "hf"
    code, out, _ = run_cli(capsys, "run", "--dry-run", "--hf-cache", str(pasted), "--gpus", "none")
    assert code == 0
    host_steps = out.rsplit(" && docker run ", 1)[0]
    subprocess.run(["sh", "-c", host_steps], check=True)
    plan_for("--hf-cache", str(created)).host_dirs[0].create()
    for made in (pasted, created):
        assert made.is_dir()
        assert (made.stat().st_uid, stat.S_IMODE(made.stat().st_mode)) == (
            created.stat().st_uid,
            stat.S_IMODE(created.stat().st_mode),
        )


@pytest.mark.parametrize(
    ("gpus", "count", "device_ids"),
    [
        ("all", -1, []),
        ("2", 2, []),
        ("count=3", 3, []),
        ("device=1", 0, ["1"]),
        ('"device=0,1"', 0, ["0", "1"]),
    ],
)
def test_gpu_syntax(gpus: str, count: int, device_ids: list[str]) -> None:
    request = run.parse_gpus(gpus)
    assert (request.count, list(request.device_ids)) == (count, device_ids)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--framework", "tgi"],
            "unknown framework 'tgi'; accepted: dynamo, vllm, sglang, trtllm; alias none (= "
            "dynamo)",
        ),
        (
            ["--target", "framework"],
            "unknown target 'framework'; accepted: runtime, dev, local-dev, pre-engine,"
            " runtime-aws, dev-aws",
        ),
        (["--image"], "--image requires an argument"),
        (["--name"], "--name requires an argument"),
        (["--hf-cache"], "--hf-cache requires an argument"),
        (["-v"], "-v requires an argument"),
        (["--port"], "-p requires an argument"),
        (["--user", "--rm"], "--user requires an argument"),
        (["--name", ""], "--name: requires a non-empty argument"),
        (["--unknown-flag"], "unknown option: --unknown-flag"),
        (["--priv"], "unknown option: --priv"),  # no prefix matching
        (["stray"], "unknown option: stray"),
        (["--rm", "maybe"], "--rm: 'maybe' is not a boolean; accepted: true, false"),
        (
            ["--gpus", "device"],
            "--gpus 'device': 'device' is not a GPU count; accepted: all, a number, "
            "device=ID[,ID...]",
        ),
        (["--gpus", "colour=red"], "--gpus 'colour=red' has unknown key 'colour'"),
        (
            ["-p", "80:90:100:110"],
            "-p '80:90:100:110' is not a port mapping; expected [IP:]HOST:CONTAINER[/PROTO]",
        ),
        (
            ["-p", "8000-8001:9000"],
            "-p '8000-8001:9000': host and container port ranges differ in length",
        ),
        (["-p", "http"], "-p 'http': 'http' is not a port or port range"),
        (["-p", "٨٠٠٠"], "-p '٨٠٠٠': '٨٠٠٠' is not a port or port range"),
        (["-p", "80/quic"], "-p '80/quic': unknown protocol 'quic'; accepted: tcp, udp, sctp"),
        (["--gpus", "١"], "--gpus '١': '١' is not a GPU count"),
        (["--ulimit", "nofile=²"], "--ulimit 'nofile=²': limits must be whole numbers"),
        (["-i"], "unknown option: -i (for an interactive terminal give -it)"),
        (["-e", "-X=1"], "-e '-X=1': '-X' is not an environment variable name"),
        (["-e", "=1"], "-e '=1': '' is not an environment variable name"),
        (
            ["--hf-cache", "~nobody-here-at-all/hf"],
            "--hf-cache '~nobody-here-at-all/hf': there is no user 'nobody-here-at-all' on this "
            "host",
        ),
        (["-v", "~nobody-here-at-all/x:/x"], "-v '~nobody-here-at-all/x': there is no user"),
        (["--image", "UPPER:tag"], "--image 'UPPER:tag' is not an image reference"),
        (["--name", "my box"], "--name 'my box' is not a container name"),
        (["--name", "-x"], "--name '-x' is not a container name"),
        (["--workdir", "relative"], "--workdir 'relative' is not an absolute path"),
        (["--user", ":0"], "--user ':0' is not USER[:GROUP]"),
    ],
)
def test_usage_errors(
    checkout: Checkout,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    assert usage_error(capsys, "run", "--dry-run", *argv).startswith(message)


def test_unreachable_engine_is_an_environment_error(
    checkout: Checkout,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    socket_path = tmp_path / "no-engine.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_path}")
    message = usage_error(capsys, "run", "--gpus", "none", "--", "true", exit_code=1)
    assert message.startswith(f"cannot reach the Docker engine at unix://{socket_path} (")
    assert message.endswith("start dockerd or point DOCKER_HOST at a running engine")


def test_interactive_without_a_terminal_is_an_environment_error(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    # pytest's stdin is never a terminal.
    assert (
        usage_error(capsys, "run", "-it", exit_code=1)
        == "-it needs a terminal on standard input; drop -it to run without one"
    )


def test_gpus_need_the_nvidia_runtime() -> None:
    gpu_plan = run.RunPlan(
        image="dynamo:latest-vllm-runtime", image_ref=None, gpus="all", runtime="nvidia"
    )
    with pytest.raises(EnvironmentProblem) as raised:
        run.check_engine_runtimes(gpu_plan, {"Runtimes": {"runc": {}, "io.containerd.runc.v2": {}}})
    assert str(raised.value) == (
        "--gpus all runs with the 'nvidia' runtime, which the Docker engine lacks (it has: "
        "io.containerd.runc.v2, runc); "
        "install the NVIDIA Container Toolkit, or pass --gpus none"
    )
    run.check_engine_runtimes(gpu_plan, {"Runtimes": {"runc": {}, "nvidia": {}}})
    run.check_engine_runtimes(
        run.RunPlan(image="x", image_ref=None, gpus=None), {"Runtimes": {"runc": {}}}
    )


def test_unknown_runtime_is_refused() -> None:
    plan = run.RunPlan(image="x", image_ref=None, gpus=None, runtime="kata")
    with pytest.raises(
        EnvironmentProblem,
        match=r"--runtime kata: the Docker engine has no such runtime \(it has: runc\)",
    ):
        run.check_engine_runtimes(plan, {"Runtimes": {"runc": {}}})


def test_missing_image_says_how_to_build_it(checkout: Checkout) -> None:
    assert run.missing_image_message(
        plan_for("--framework", "sglang", "--target", "runtime-aws")
    ) == (
        "image dynamo:latest-sglang-runtime-aws is not built; build it with: ./pants package "
        "docker/sglang:runtime-aws"
    )
    assert run.missing_image_message(plan_for("--image", "dynamo:latest-dynamo-runtime")) == (
        "image dynamo:latest-dynamo-runtime is not built; build it with: ./pants package "
        "docker/dynamo:runtime"
    )
    assert (
        run.missing_image_message(plan_for("--image", "other:1"))
        == "image other:1 is not in the Docker engine"
    )


def test_bad_gpu_syntax_is_a_usage_error_class() -> None:
    with pytest.raises(UsageError):
        run.parse_gpus("count=many")


def test_ulimit_overrides_replace_fixed_ones_in_place(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = dry_run_argv(
        capsys,
        "--hf-cache",
        "none",
        "--ulimit",
        "nofile=1024:4096",
        "--ulimit",
        "core=0",
        "--ulimit",
        "memlock=4194304",
    )
    assert option_values(argv, "--ulimit") == [
        "memlock=4194304",
        "stack=67108864",
        "nofile=1024:4096",
        "core=0",
    ]
    assert [
        (u["Name"], u["Soft"], u["Hard"])
        for u in plan_for("--ulimit", "nofile=1024:4096").sdk_kwargs({})["ulimits"]
    ] == [("memlock", -1, -1), ("stack", 67108864, 67108864), ("nofile", 1024, 4096)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "files=10",
            "--ulimit 'files=10' is not NAME=SOFT[:HARD] with NAME one of core, cpu,",
        ),
        ("nofile", "--ulimit 'nofile' is not NAME=SOFT[:HARD]"),
        (
            "memlock=lots",
            "--ulimit 'memlock=lots': limits must be whole numbers (-1 for unlimited)",
        ),
    ],
)
def test_bad_ulimits(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    assert usage_error(capsys, "run", "--dry-run", "--ulimit", value).startswith(message)


def test_start_failure_from_limits_says_how_to_lower_them(checkout: Checkout) -> None:
    reason = (
        "OCI runtime create failed: error setting rlimit type 8: operation not permitted: unknown"
    )
    assert run.start_failure_message(plan_for("--ulimit", "core=0"), reason) == (
        f"docker could not start dynamo:latest-vllm-dev: {reason}; the engine cannot grant "
        "--ulimit memlock=-1 stack=67108864 nofile=65536:65536 core=0: lower them with --ulimit "
        "NAME=SOFT[:HARD]"
    )
    assert (
        run.start_failure_message(plan_for(), "no space left")
        == "docker could not start dynamo:latest-vllm-dev: no space left"
    )
