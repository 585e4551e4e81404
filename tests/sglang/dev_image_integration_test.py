"""docker/sglang:dev on the real Docker engine: root, developer tools, pytest beside SGLang, the
source tree at /workspace and /sgl-workspace/dynamo, on the runtime image's layers."""

from __future__ import annotations

from engine_image_checks import check_dev_image


def test_dev_image_has_sglang_pytest_and_sources_on_the_runtime_layers() -> None:
    check_dev_image("sglang", "sglang, dynamo.sglang", ("/workspace", "/sgl-workspace/dynamo"))
