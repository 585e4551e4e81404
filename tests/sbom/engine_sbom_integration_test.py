"""The SBOMs of the engine images (tests/sbom_checks.py), on the real ~10 GB images."""

from __future__ import annotations

import pytest
from built_images import packaged_targets
from sbom_checks import check_contents


@pytest.mark.parametrize("target", packaged_targets())
def test_the_sbom_lists_what_the_engine_image_holds(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    check_contents(target, capsys)
