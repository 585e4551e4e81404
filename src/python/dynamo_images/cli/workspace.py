"""Finding the dynamo-images checkout the CLI works on."""

from __future__ import annotations

from pathlib import Path

from dynamo_images.cli.errors import EnvironmentProblem

# pants.toml sits at the repository root and nowhere else, so it marks the checkout.
ROOT_MARKER = "pants.toml"


def find_repo_root(start: Path) -> Path:
    """The nearest directory at or above `start` holding pants.toml."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / ROOT_MARKER).is_file():
            return directory
    raise EnvironmentProblem(
        f"not inside the dynamo-images checkout: no {ROOT_MARKER} in {start} or above; "
        "run this from the repository"
    )
