from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dynamo_images.cli.conftest import Checkout, usage_error


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_error(capsys) == "give a command: run, build, inspect, diff, sbom"


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        usage_error(capsys, "launch")
        == "unknown command 'launch'; accepted: run, build, inspect, diff, sbom"
    )


def test_module_entry_point_reports_one_line_and_exit_code(checkout: Checkout) -> None:
    """`python -m dynamo_images.cli` as a user would call it: stdout, stderr and exit codes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    dry = subprocess.run(
        [
            sys.executable,
            "-m",
            "dynamo_images.cli",
            "run",
            "--dry-run",
            "--gpus",
            "none",
            "--hf-cache",
            "none",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert (dry.returncode, dry.stderr) == (0, "")
    assert dry.stdout.startswith("docker run --rm --network host ")

    bad = subprocess.run(
        [sys.executable, "-m", "dynamo_images.cli", "build", "--framework", "tgi"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert (bad.returncode, bad.stdout) == (2, "")
    assert (
        bad.stderr
        == "dynamo-images: error: unknown framework 'tgi'; accepted: dynamo, vllm, sglang, "
        "trtllm; alias none (= dynamo)\n"
    )


def run_without_site_packages(checkout: Checkout, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m dynamo_images.cli ARGV` from the checkout's root with only the standard library
    and our sources: no Docker SDK, and the checkout's docker/ folder first on sys.path."""
    import dynamo_images

    sources = os.path.dirname(os.path.dirname(dynamo_images.__file__))
    program = (
        "import runpy, sys; "
        f"sys.path[:0] = ['', {sources!r}]; "
        f"sys.argv = ['dynamo-images', *{list(argv)!r}]; "
        "runpy.run_module('dynamo_images.cli', run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", program],
        capture_output=True,
        text=True,
        cwd=checkout.repo,
        check=False,
    )


def test_dry_runs_need_no_docker_sdk_and_real_runs_say_it_is_missing(checkout: Checkout) -> None:
    assert (checkout.repo / "docker").is_dir()  # what shadowed the SDK before
    dry = run_without_site_packages(checkout, "run", "--dry-run", "--gpus", "none")
    assert (dry.returncode, dry.stderr) == (0, "")
    assert " docker run --rm " in dry.stdout
    real = run_without_site_packages(checkout, "run", "--gpus", "none", "--", "true")
    assert (real.returncode, real.stdout) == (1, "")
    assert real.stderr == (
        "dynamo-images: error: the Docker SDK for Python is not installed (pip install docker, "
        "or run the CLI through ./pants run src/python/dynamo_images/cli:dynamo-images); "
        "--dry-run works without it\n"
    )


# Words a fuzzed command line is made of: every option of both commands, and values that broke
# parsers before (other scripts' digits, "-"-led values, "~user", empty, huge, odd references).
FUZZ_VALUES = (
    "",
    "-",
    "--",
    "-X=1",
    "=",
    "a=b",
    "²",
    "١٢٣",
    "0",
    "-1",
    "65536",
    "99999999999999999999",
    "~",
    "~/x",
    "~nobody-here-at-all/x",
    "UPPER:tag",
    "x" * 300,
    "a b",
    "\t",
    "all",
    "none",
    "true",
    "FALSE",
    "device=0,1",
    '"device=0,1"',
    "count=²",
    "1:2:3:4",
    "[::1]:80:80/udp",
    "80-81:90",
    "/abs",
    "rel",
    "localhost:5000/x:y",
    "x@sha256:" + "a" * 64,
    "nofile=1:2",
    "memlock=-1",
    "vllm",
    "trtllm",
    "runtime",
    "local-dev",
    "frontend",
    "linux/amd64",
    "13.0",
    "NAME=VALUE",
)


def test_no_command_line_makes_a_traceback(
    checkout: Checkout, capsys: pytest.CaptureFixture[str]
) -> None:
    """Random command lines (seeded): each ends in exit 0 or one error line, never an exception."""
    import random

    from dynamo_images.cli.main import main, make_parser

    parser = make_parser()
    options = {
        command: sorted(
            spelling
            for action in subparser._actions
            for spelling in action.option_strings
            if spelling not in ("-h", "--help", "-?")
        )
        for command, subparser in parser.commands.items()
        if command in ("run", "build")
    }
    generator = random.Random(20261201)
    for _ in range(3000):
        command = generator.choice(sorted(options))
        words = [
            generator.choice(options[command] if generator.random() < 0.5 else FUZZ_VALUES)
            for _ in range(generator.randint(0, 6))
        ]
        argv = [command, "--dry-run", *words]
        code = main(argv)  # an exception fails the test, naming argv below
        out, err = capsys.readouterr()
        assert code in (0, 1, 2), argv
        if code:
            assert (
                out == "" and err.count("\n") == 1 and err.startswith("dynamo-images: error: ")
            ), (
                argv,
                err,
            )
