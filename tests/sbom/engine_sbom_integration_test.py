"""The SBOMs of the engine images (tests/sbom_checks.py), on the real ~10 GB images."""

from __future__ import annotations

import pytest
from sbom_checks import check_contents


@pytest.mark.parametrize(
    "target", ["docker/vllm:runtime", "docker/vllm:dev", "docker/sglang:runtime"]
)
def test_the_sbom_lists_what_the_engine_image_holds(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    check_contents(target, capsys)
