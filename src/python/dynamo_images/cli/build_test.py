from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from dynamo_images import trtllm_source
from dynamo_images.cli import build, parity
from dynamo_images.cli.conftest import Checkout, dry_build_steps, run_cli, usage_error
from dynamo_images.cli.main import main, make_parser

AWKWARD_VALUE = """it's a "quoted" value with  spaces and $HOME"""


@pytest.fixture
def amd64_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "host_platform", lambda: "linux/amd64")


@pytest.fixture
def trtllm_locked(checkout: Checkout) -> None:
    """A trtllm lock in the checkout, which defines docker/trtllm:runtime and :dev."""
    (checkout.repo / "3rdparty/python/trtllm.lock").write_text('{"locked_resolves": []}\n')


@pytest.fixture
def trtllm_wheel_dir(tmp_path: Path) -> Path:
    wheel_dir = tmp_path / "trt wheels"
    wheel_dir.mkdir()
    (wheel_dir / "tensorrt_llm-1.3.0rc1-cp312-cp312-linux_x86_64.whl").write_bytes(b"")
    return wheel_dir


def test_default_builds_the_vllm_dev_image(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dry_build_steps(capsys) == [["./pants", "package", "docker/vllm:dev"]]


@pytest.mark.parametrize(
    ("flags", "address"),
    [
        (["--framework", "vllm", "--target", "runtime"], "docker/vllm:runtime"),
        (["--framework", "SGLang", "--target", "runtime"], "docker/sglang:runtime"),
        (["--framework", "sglang"], "docker/sglang:dev"),
        (["--framework", "none", "--target", "runtime"], "docker/dynamo:runtime"),
        (["--framework", "DYNAMO", "--target", "dev"], "docker/dynamo:dev"),
        (["--target", "frontend"], "docker/epp:runtime"),
        (["--framework", "dynamo", "--target", "frontend"], "docker/epp:runtime"),
    ],
)
def test_framework_and_target_pick_the_pants_target(
    checkout: Checkout,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    address: str,
) -> None:
    assert dry_build_steps(capsys, *flags) == [["./pants", "package", address]]


def test_sglang_takes_the_cuda_knob_its_build_file_accepts(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dry_build_steps(capsys, "--framework", "sglang", "--cuda-version", "13.0") == [
        ["DYNAMO_CUDA_VERSION=13.0", "./pants", "package", "docker/sglang:dev"]
    ]


@pytest.mark.parametrize(
    ("flags", "assignment"),
    [
        (["--cuda-version", "13.0"], "DYNAMO_CUDA_VERSION=13.0"),
        (["--platform", "linux/amd64"], "DYNAMO_PLATFORM=linux/amd64"),
        (["--base-image", "localhost:5000/my/base"], "DYNAMO_BASE_IMAGE=localhost:5000/my/base"),
        (
            ["--base-image", "nvcr.io/nvidia/cuda", "--base-image-tag", "13.0.1-runtime"],
            "DYNAMO_BASE_IMAGE=nvcr.io/nvidia/cuda:13.0.1-runtime",
        ),
    ],
)
def test_each_knob_becomes_its_environment_variable(
    checkout: Checkout,
    capsys: pytest.CaptureFixture[str],
    amd64_host: None,
    flags: list[str],
    assignment: str,
) -> None:
    [step] = dry_build_steps(capsys, "--target", "runtime", *flags)
    assert step[0] == assignment
    assert step[1:3] == ["./pants", "package"]


def test_knobs_combine_in_table_order(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], amd64_host: None
) -> None:
    [step] = dry_build_steps(
        capsys,
        "--base-image",
        "b",
        "--cuda-version",
        "13.0",
        "--platform",
        "linux/amd64",
    )
    assert step == [
        "DYNAMO_PLATFORM=linux/amd64",
        "DYNAMO_CUDA_VERSION=13.0",
        "DYNAMO_BASE_IMAGE=b",
        "./pants",
        "package",
        "docker/vllm:dev",
    ]


def test_knob_table_follows_the_naming_rule_and_every_flag_parses(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    for knob in build.BUILD_KNOBS:
        assert knob.env_var == "DYNAMO_" + knob.flag.removeprefix("--").upper().replace("-", "_")
    assert len({knob.env_var for knob in build.BUILD_KNOBS}) == len(build.BUILD_KNOBS)


def test_build_args_go_through_pants_global_build_args(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    [step] = dry_build_steps(
        capsys, "--build-arg", f"NOTE={AWKWARD_VALUE}", "--build-arg", "PLAIN=1"
    )
    assert step[0] == "./pants"
    options = step[1:3]
    assert [option.partition("=")[0] for option in options] == ["--docker-build-args"] * 2
    # Pants splits each value of this shell-string list option shell-style; each must stay one arg.
    assert [shlex.split(option.partition("=")[2]) for option in options] == [
        [f"NOTE={AWKWARD_VALUE}"],
        ["PLAIN=1"],
    ]
    assert step[3:] == ["package", "docker/vllm:dev"]


def test_tags_are_applied_from_the_built_image_id(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = dry_build_steps(
        capsys,
        "--target",
        "runtime",
        "--tag",
        "my/dynamo:one",
        "--tag",
        "registry.example:5000/x:two",
    )
    assert steps[0] == ["./pants", "package", "docker/vllm:runtime"]
    assert steps[1][0].startswith("image_id=$(python3")
    assert steps[2:] == [
        ["docker", "tag", "$image_id", "my/dynamo:one"],
        ["docker", "tag", "$image_id", "registry.example:5000/x:two"],
    ]


def test_printed_build_runs_as_printed(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Run the dry-run output in a shell, with ./pants and docker replaced by recorders."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.jsonl"
    recorder = (
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        f"with open({str(log)!r}, 'a') as log:\n"
        "    env = {k: v for k, v in os.environ.items() if k.startswith('DYNAMO_')}\n"
        "    log.write(json.dumps({'argv': [os.path.basename(sys.argv[0]), *sys.argv[1:]], 'env': "
        "env, 'cwd': os.getcwd()}) + '\\n')\n"
    )
    for path in (bin_dir / "docker", checkout.repo / "pants"):
        path.write_text(recorder)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    info = checkout.repo / "dist" / "docker.vllm" / "runtime.docker-info.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"version": 1, "image_id": "sha256:feedface", "registries": []}))
    subdirectory = checkout.repo / "src"
    subdirectory.mkdir()
    os.chdir(subdirectory)  # the printed script cds to the checkout first

    code, out, _ = run_cli(
        capsys,
        "build",
        "--dry-run",
        "--target",
        "runtime",
        "--base-image",
        "registry.example:5000/team/cuda:12.9-devel",
        "--build-arg",
        f"NOTE={AWKWARD_VALUE}",
        "--tag",
        "localhost:5000/mine:1",
        "--push",
    )
    assert code == 0
    subprocess.run(
        ["sh", "-c", out],
        check=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [
        {
            "argv": [
                "pants",
                f"--docker-build-args={shlex.quote('NOTE=' + AWKWARD_VALUE)}",
                "package",
                "docker/vllm:runtime",
            ],
            "env": {"DYNAMO_BASE_IMAGE": "registry.example:5000/team/cuda:12.9-devel"},
            "cwd": str(checkout.repo),
        },
        {
            "argv": ["docker", "tag", "sha256:feedface", "localhost:5000/mine:1"],
            "env": {},
            "cwd": str(checkout.repo),
        },
        {
            "argv": ["docker", "push", "localhost:5000/mine:1"],
            "env": {},
            "cwd": str(checkout.repo),
        },
    ]


def test_push_without_tags_publishes_with_pants_to_the_configured_registry(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYNAMO_REGISTRY", "localhost:5000/team")
    assert dry_build_steps(capsys, "--push") == [
        ["DYNAMO_REGISTRY=localhost:5000/team", "./pants", "package", "publish", "docker/vllm:dev"]
    ]
    monkeypatch.setenv("DYNAMO_REGISTRY_LAYOUT", "upstream")
    assert dry_build_steps(capsys, "--push")[0][:2] == [
        "DYNAMO_REGISTRY=localhost:5000/team",
        "DYNAMO_REGISTRY_LAYOUT=upstream",
    ]
    plan = build.plan_build(
        make_parser().parse_args(["build", "--push"]), Path.cwd(), 0, 0, os.environ
    )
    assert plan.registries_to_check == ("localhost:5000",)
    monkeypatch.setenv("DYNAMO_REGISTRY", "Not A Registry")
    assert usage_error(capsys, "build", "--dry-run", "--push") == (
        "DYNAMO_REGISTRY='Not A Registry' is not a registry address HOST[:PORT][/PATH] "
        "(e.g. localhost:5000 or nvcr.io/nvidia)"
    )


def test_push_with_tags_pushes_exactly_those(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYNAMO_REGISTRY", "localhost:5000")  # not used: the tags say where
    steps = dry_build_steps(
        capsys, "--push", "--tag", "localhost:5001/a:1", "--tag", "b.example/c:2"
    )
    assert steps[0] == ["./pants", "package", "docker/vllm:dev"]
    assert [step for step in steps if step[:2] == ["docker", "push"]] == [
        ["docker", "push", "localhost:5001/a:1"],
        ["docker", "push", "b.example/c:2"],
    ]
    plan = build.plan_build(
        make_parser().parse_args(
            ["build", "--push", "--tag", "localhost:5001/a:1", "--tag", "d:3"]
        ),
        Path.cwd(),
        0,
        0,
        os.environ,
    )
    assert plan.registries_to_check == ("localhost:5001", "docker.io")
    assert not plan.publish_with_pants


def test_every_refused_upstream_flag_says_what_replaces_it(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    for flag in build.REFUSED_FLAGS:
        value = [] if flag.metavar is None else ["x"]
        for spelling in flag.spellings:
            assert usage_error(capsys, "build", "--dry-run", spelling, *value) == (
                f"{flag.name}: {flag.refusal}"
            )


def test_question_mark_is_help(checkout: Checkout, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["build", "-?"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: dynamo-images build")


def test_no_tag_latest_restores_the_previous_latest(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = dry_build_steps(capsys, "--target", "runtime", "--no-tag-latest")
    assert steps[0] == [
        "previous_latest=$(docker",
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "dynamo:latest-vllm-runtime",
        "2>/dev/null",
        "||",
        "true)",
    ]
    assert steps[1] == ["./pants", "package", "docker/vllm:runtime"]
    assert steps[2] == [
        "if",
        "[",
        "-n",
        "$previous_latest",
        "];",
        "then",
        "docker",
        "tag",
        "$previous_latest",
        "dynamo:latest-vllm-runtime;",
        "else",
        "docker",
        "rmi",
        "dynamo:latest-vllm-runtime;",
        "fi",
    ]


@pytest.mark.parametrize(
    ("flag", "variable"),
    [
        ("--tensorrtllm-pip-wheel-dir", trtllm_source.WHEEL_DIR_VAR),
        ("--tensorrtllm-index-url", trtllm_source.INDEX_VAR),
    ],
)
def test_trtllm_source_flags_reach_pants(
    checkout: Checkout,
    trtllm_locked: None,
    capsys: pytest.CaptureFixture[str],
    trtllm_wheel_dir: Path,
    flag: str,
    variable: str,
) -> None:
    """As the variable ./pants reads; its preflight checks the source against the trtllm lock."""
    value = str(trtllm_wheel_dir) if flag.endswith("-dir") else "https://mirror.example/nvidia/"
    [step] = dry_build_steps(capsys, "--framework", "trtllm", "--target", "runtime", flag, value)
    assert step == [f"{variable}={value}", "./pants", "package", "docker/trtllm:runtime"]


def test_trtllm_without_flags_takes_the_default_source(
    checkout: Checkout, trtllm_locked: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """NVIDIA's index (trtllm_source.py): nothing to set."""
    [step] = dry_build_steps(capsys, "--framework", "trtllm", "--target", "runtime")
    assert step == ["./pants", "package", "docker/trtllm:runtime"]


@pytest.mark.parametrize("target", ["runtime", "dev"])
def test_trtllm_engine_images_without_a_lock_say_what_to_provide(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], trtllm_wheel_dir: Path, target: str
) -> None:
    """Before any work, in the dry run too: the line ./pants would print."""
    message = usage_error(capsys, "build", "--dry-run", "--framework", "trtllm", "--target", target)
    assert message.startswith("docker/trtllm:runtime needs 3rdparty/python/trtllm.lock")
    assert "NVIDIA's index https://pypi.nvidia.com/" in message
    message = usage_error(
        capsys,
        "build",
        "--dry-run",
        "--framework",
        "trtllm",
        "--tensorrtllm-pip-wheel-dir",
        str(trtllm_wheel_dir),
    )
    assert f"generated from the wheel directory {trtllm_wheel_dir}" in message


def test_trtllm_pre_engine_image_builds_without_a_source(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    [step] = dry_build_steps(capsys, "--framework", "trtllm", "--target", "pre-engine")
    assert step == ["./pants", "package", "docker/trtllm:pre-engine"]


def test_local_dev_takes_the_given_uid_and_gid(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    [step] = dry_build_steps(capsys, "--target", "local-dev", "--uid", "1234", "--gid", "5678")
    assert step == [
        "DYNAMO_UID=1234",
        "DYNAMO_GID=5678",
        "./pants",
        "package",
        "docker/vllm:local-dev",
    ]


def test_local_dev_defaults_to_the_callers_uid_and_gid(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build.os, "getuid", lambda: 4321)
    monkeypatch.setattr(build.os, "getgid", lambda: 8765)
    [step] = dry_build_steps(capsys, "--framework", "sglang", "--target", "local-dev")
    assert step[:2] == ["DYNAMO_UID=4321", "DYNAMO_GID=8765"]
    monkeypatch.setattr(build.os, "getuid", lambda: 0)
    message = usage_error(capsys, "build", "--dry-run", "--target", "local-dev")
    assert message.startswith("local-dev maps the dynamo user to your UID, and you are root")


@pytest.mark.parametrize(("target", "variant"), [("runtime", "runtime-aws"), ("dev", "dev-aws")])
def test_make_efa_builds_the_aws_variant(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], target: str, variant: str
) -> None:
    [step] = dry_build_steps(capsys, "--framework", "sglang", "--target", target, "--make-efa")
    assert step == ["./pants", "package", f"docker/sglang:{variant}"]


def test_a_framework_without_a_build_file_has_no_images(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    (checkout.repo / "docker/trtllm/BUILD").unlink()
    message = usage_error(capsys, "build", "--dry-run", "--framework", "trtllm")
    assert message.startswith("framework 'trtllm' has no images yet (no docker/trtllm/BUILD)")


def test_only_trtllm_has_a_pre_engine_image(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    message = usage_error(
        capsys, "build", "--dry-run", "--framework", "vllm", "--target", "pre-engine"
    )
    assert message.startswith("docker/vllm:pre-engine is not defined in docker/vllm/BUILD")


def test_trtllm_source_problems(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = ("build", "--dry-run", "--framework", "trtllm")
    absent = tmp_path / "absent"
    assert usage_error(capsys, *base, "--tensorrtllm-pip-wheel-dir", str(absent), exit_code=1) == (
        f"--tensorrtllm-pip-wheel-dir {absent}: no such directory"
    )
    assert usage_error(capsys, *base, "--tensorrtllm-index-url", "pypi.nvidia.com") == (
        f"{trtllm_source.INDEX_VAR}='pypi.nvidia.com' is not an http(s) URL of a package index"
    )


TRTLLM_UNRESOLVABLE = "cannot tell how to install TensorRT-LLM from"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--tensorrtllm-pip-wheel", "tensorrt-llm==1.3.0rc1"],
            f"--tensorrtllm-pip-wheel: {parity.TRTLLM_VERSION_PINNED}",
        ),
        (
            ["--tensorrtllm-index-url", "https://x.invalid/", "--tensorrtllm-pip-wheel-dir", "/w"],
            f"{TRTLLM_UNRESOLVABLE} --tensorrtllm-index-url, --tensorrtllm-pip-wheel-dir;",
        ),
        (
            [
                "--tensorrtllm-index-url",
                "https://x.invalid/",
                "--tensorrtllm-git-url",
                "https://example.invalid/trt.git",
            ],
            TRTLLM_UNRESOLVABLE,
        ),
        (
            [
                "--tensorrtllm-git-url",
                "https://example.invalid/trt.git",
                "--tensorrtllm-commit",
                "v1",
            ],
            "--tensorrtllm-git-url: building TensorRT-LLM from git is not part of this build",
        ),
        (
            ["--tensorrtllm-commit", "v1"],
            "--tensorrtllm-commit only picks what to build from git",
        ),
    ],
)
def test_trtllm_intent_must_resolve_to_one_source(
    checkout: Checkout,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    assert usage_error(capsys, "build", "--dry-run", "--framework", "trtllm", *flags).startswith(
        message
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--framework", "tgi"],
            "unknown framework 'tgi'; accepted: dynamo, vllm, sglang, trtllm; alias none (= "
            "dynamo)",
        ),
        (
            ["--target", "debug"],
            "unknown target 'debug'; accepted: runtime, dev, local-dev, pre-engine, framework,"
            " frontend",
        ),
        (
            ["--framework", "none", "--target", "framework"],
            "target 'framework' is the engine build stage and framework 'dynamo' has no engine",
        ),
        (
            ["--target", "framework"],
            "docker/vllm:framework: engines come prebuilt from PyPI wheels, in the runtime image's"
            " layers, so there is no engine build stage; buildable: docker/dynamo:runtime,"
            " docker/dynamo:dev, docker/dynamo:runtime-aws, docker/dynamo:dev-aws,"
            " docker/dynamo:local-dev, docker/epp:runtime,",
        ),
        (
            ["--target", "local-dev", "--uid", "0"],
            "--uid 0: local-dev maps the dynamo user to a non-root UID",
        ),
        (
            ["--make-efa", "--efa-version", "1.45.1"],
            "--efa-version: EFA libraries come from Debian's libfabric and rdma-core packages",
        ),
        (
            ["--cuda-version", "12.9"],
            "unsupported --cuda-version '12.9' for vllm; accepted: 13.0 (vllm 0.31.0 needs torch"
            " 2.13.0, whose only PyPI build is for CUDA 13.0",
        ),
        (
            ["--framework", "dynamo", "--cuda-version", "13.0"],
            "--cuda-version 13.0: the dynamo image has no CUDA libraries",
        ),
        (
            ["--target", "frontend", "--cuda-version", "13.0"],
            "--cuda-version applies to framework images, not docker/epp:runtime",
        ),
        (
            ["--enable-kvbm"],
            "--enable-kvbm: not available for vllm: kvbm 1.6.1 pins nixl[cu13]==1.3.2 and"
            " ai-dynamo[vllm]==1.6.1 pins nixl[cu13]==1.4.1",
        ),
        (["--enable-gpu-memory-service"], "--enable-gpu-memory-service: upstream builds"),
        (["--vllm-max-jobs", "8"], "--vllm-max-jobs: vLLM is installed from its PyPI wheel"),
        (["--base-image-tag", "t"], "--base-image-tag needs --base-image"),
        (["--cuda-version"], "--cuda-version requires an argument"),
        (["--tag"], "--tag requires an argument"),
        (["--build-arg"], "--build-arg requires an argument"),
        (
            ["--tensorrtllm-pip-wheel-dir"],
            "--tensorrtllm-pip-wheel-dir requires an argument",
        ),
        (["--frobnicate"], "unknown option: --frobnicate"),
        (["--dev-image", "x"], "--dev-image: local-dev images build on the framework's :dev"),
        (["--uid", "١٢٣", "--target", "local-dev"], "--uid '١٢٣' is not a whole number >= 0"),
        (["--gid", "²", "--target", "local-dev"], "--gid '²' is not a whole number >= 0"),
        (["--vllm-max-jobs", "²"], "--vllm-max-jobs: vLLM is installed from its PyPI wheel"),
        (["--tag", "UPPER:tag"], "--tag 'UPPER:tag' is not an image reference"),
        (["--tag", "x@sha256:" + "a" * 64], "--tag 'x@sha256:"),
        (["--base-image", "Bad Image"], "--base-image 'Bad Image' is not an image reference"),
        (["--base-image", "b", "--base-image-tag", "-x"], "--base-image-tag '-x' is not a tag"),
        (["--push"], "--push needs a registry: name the image with --tag REGISTRY/NAME:TAG"),
        (["--uid", "1000"], "--uid/--gid apply to --target local-dev only, not 'dev'"),
        (
            ["--target", "runtime", "--gid", "1000"],
            "--uid/--gid apply to --target local-dev only, not 'runtime'",
        ),
        (
            ["--use-sccache"],
            "--use-sccache needs --sccache-bucket and --sccache-region",
        ),
        (
            ["--use-sccache", "--sccache-bucket", "b"],
            "--use-sccache needs --sccache-region",
        ),
        (
            ["--use-sccache", "--sccache-bucket", "b", "--sccache-region", "r"],
            "--use-sccache: the REAPI remote cache in pants.ci.toml replaces sccache",
        ),
        (
            ["--sccache-bucket", "b"],
            "--use-sccache: the REAPI remote cache in pants.ci.toml replaces sccache",
        ),
        (
            ["--framework", "vllm", "--tensorrtllm-pip-wheel-dir", "/w"],
            "--tensorrtllm-pip-wheel-dir applies to --framework trtllm only, not 'vllm'",
        ),
        (
            ["--framework", "sglang", "--tensorrtllm-commit", "v1"],
            "--tensorrtllm-commit applies to --framework trtllm only, not 'sglang'",
        ),
        (
            ["--target", "local-dev", "--make-efa"],
            "EFA images exist for targets runtime and dev only, not 'local-dev'",
        ),
        (
            ["--target", "framework", "--make-efa"],
            "EFA images exist for targets runtime and dev only, not 'framework'",
        ),
        (
            ["--efa-version", "1.45.1"],
            "--efa-version: EFA libraries come from Debian's libfabric and rdma-core packages",
        ),
        (
            ["--platform", "linux/s390x"],
            "unknown --platform 'linux/s390x'; accepted: linux/amd64, linux/arm64",
        ),
        (
            ["--platform", "linux/arm64"],
            "--platform linux/arm64: Pants 2.17 builds for the host's platform only (no "
            "build_platform field) and this host is linux/amd64; build on an arm64 host",
        ),
        (
            ["--no-cache"],
            "--no-cache: Pants 2.17 has no [docker] no-cache option (it arrived in 2.18); run "
            "`docker builder prune`",
        ),
        (
            ["--cache-from", "type=registry,ref=x"],
            "--cache-from: the REAPI remote cache in pants.ci.toml plus Docker's local layer "
            "cache replace it",
        ),
        (
            ["--cache-to", "type=inline"],
            "--cache-to: the REAPI remote cache in pants.ci.toml plus Docker's local layer cache "
            "replace",
        ),
        (
            ["--no-tag-latest", "--push"],
            "--no-tag-latest cannot be combined with --push without --tag: ./pants publish "
            "pushes every tag of docker/vllm:dev",
        ),
        (
            ["--target", "frontend", "--framework", "vllm"],
            "--target frontend builds the EPP image docker/epp:runtime, which has no framework; "
            "drop --framework vllm",
        ),
        (["--build-arg", "NOVALUE"], "--build-arg 'NOVALUE' is not NAME=VALUE"),
        (
            ["--tag", "has space:1"],
            "--tag 'has space:1' is not an image reference [REGISTRY[:PORT]/]NAME[:TAG]",
        ),
        (["--", "echo"], "build takes no command after --"),
    ],
)
def test_usage_errors(
    checkout: Checkout,
    capsys: pytest.CaptureFixture[str],
    amd64_host: None,
    argv: list[str],
    message: str,
) -> None:
    assert usage_error(capsys, "build", "--dry-run", *argv).startswith(message)


def test_outside_the_checkout_is_an_environment_error(
    checkout: Checkout, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    os.chdir(tmp_path)
    assert usage_error(capsys, "build", "--dry-run", exit_code=1).startswith(
        "not inside the dynamo-images checkout"
    )


def test_real_build_needs_the_launcher_and_the_engine(
    checkout: Checkout,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    assert (
        usage_error(capsys, "build", exit_code=1)
        == f"no ./pants launcher in {checkout.repo.resolve()}"
    )
    (checkout.repo / "pants").write_text("#!/bin/sh\nexit 0\n")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert usage_error(capsys, "build", exit_code=1).startswith(
        f"cannot reach the Docker engine at unix://{tmp_path}/no-engine.sock"
    )
