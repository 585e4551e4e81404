from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dynamo_images.cli.conftest import Checkout, usage_error


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_error(capsys) == "give a command: run, build, inspect"


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        usage_error(capsys, "launch") == "unknown command 'launch'; accepted: run, build, inspect"
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
