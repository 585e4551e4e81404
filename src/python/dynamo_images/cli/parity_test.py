from __future__ import annotations

import argparse

import pytest

from dynamo_images.cli import parity
from dynamo_images.cli.main import make_parser

# Ours only: spelled in the run row of -it, which says upstream rejects it too.
HIDDEN_RUN_OPTIONS = {"-i"}


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {spelling for action in parser._actions for spelling in action.option_strings}


def table_spellings(rows: tuple[parity.Flag, ...]) -> set[str]:
    return {spelling for row in rows for spelling in row.spellings}


def test_readme_tables_are_generated_from_the_rows() -> None:
    current = parity.README.read_text()
    assert (
        parity.render_readme(current) == current
    ), "run: python -m dynamo_images.cli.parity --write"


@pytest.mark.parametrize(
    ("command", "rows", "hidden"),
    [("build", parity.BUILD_FLAGS, set()), ("run", parity.RUN_FLAGS, HIDDEN_RUN_OPTIONS)],
)
def test_every_option_has_a_row_and_every_row_an_option(
    command: str, rows: tuple[parity.Flag, ...], hidden: set[str]
) -> None:
    """Each upstream flag is accepted or refused by name (never 'unknown option'), and nothing
    the parser takes is missing from the README's table."""
    parser = make_parser().commands[command]
    assert option_strings(parser) - hidden == table_spellings(rows) - {"--"}


def test_stale_tables_are_detected(tmp_path: pytest.TempPathFactory) -> None:
    current = parity.README.read_text()
    stale = current.replace("| `--no-load` |", "| `--no-load-at-all` |")
    assert parity.render_readme(stale) == current
