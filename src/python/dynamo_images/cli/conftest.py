"""Shared fixtures: a throwaway checkout and home, and helpers that parse dry-run output."""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from dynamo_images.cli.build import STEP_SEPARATOR
from dynamo_images.cli.main import main

# Host variables that change what the CLI prints; each test starts without them.
HOST_VARIABLES = ("HF_HOME", "HF_TOKEN", "DOCKER_HOST", "DYNAMO_REGISTRY", "DYNAMO_REGISTRY_LAYOUT")


@dataclass(frozen=True)
class Checkout:
    repo: Path
    home: Path


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Checkout:
    """A fake dynamo-images checkout as the working directory, and a fresh HOME."""
    repo = tmp_path / "checkout with space"
    repo.mkdir()
    # The real pants.toml (resolves and their locks) and default lock, which the TRT-LLM source
    # selection reads; no trtllm lock unless a test writes one.
    shutil.copyfile("pants.toml", repo / "pants.toml")
    (repo / "3rdparty/python").mkdir(parents=True)
    shutil.copyfile("3rdparty/python/default.lock", repo / "3rdparty/python/default.lock")
    # The real image definitions, which `build` reads to learn what exists (the test runs at the
    # root of a copy of the repository: //:project-files).
    for build_file in Path("docker").glob("*/BUILD"):
        (repo / build_file.parent).mkdir(parents=True)
        shutil.copyfile(build_file, repo / build_file)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for variable in HOST_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(repo)
    return Checkout(repo=repo, home=home)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def dry_run_words(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    """`run --dry-run ARGV`, the printed command line split as a shell would."""
    code, out, err = run_cli(capsys, "run", "--dry-run", *argv)
    assert (code, err) == (0, "")
    assert out.count("\n") == 1, "the dry run prints exactly one command line"
    return shlex.split(out)


def dry_run_argv(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    """The `docker run` part of `run --dry-run ARGV` (the host steps before it dropped)."""
    words = dry_run_words(capsys, *argv)
    last_separator = max((i for i, word in enumerate(words) if word == "&&"), default=-1)
    return words[last_separator + 1 :]


def dry_build_steps(capsys: pytest.CaptureFixture[str], *argv: str) -> list[list[str]]:
    """`build --dry-run ARGV`, each &&-joined step parsed back into its words."""
    code, out, err = run_cli(capsys, "build", "--dry-run", *argv)
    assert (code, err) == (0, "")
    return [shlex.split(step) for step in out.rstrip("\n").split(STEP_SEPARATOR)]


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str, exit_code: int = 2) -> str:
    """Run ARGV expecting a one-line error with `exit_code`; return the line."""
    code, out, err = run_cli(capsys, *argv)
    assert code == exit_code, err
    assert out == ""
    assert err.startswith("dynamo-images: error: ")
    assert err.count("\n") == 1, f"not one line: {err!r}"
    return err.removeprefix("dynamo-images: error: ").rstrip("\n")
