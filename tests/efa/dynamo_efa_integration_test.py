"""docker/dynamo:runtime-aws and :dev-aws on the real Docker engine (efa_image_checks)."""

from __future__ import annotations

import pytest
from efa_image_checks import check_efa_variant


@pytest.mark.parametrize(("target", "uid"), [("runtime", "1000"), ("dev", "0")])
def test_efa_variant(target: str, uid: str) -> None:
    check_efa_variant("dynamo", target, uid)
