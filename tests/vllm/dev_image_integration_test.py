"""docker/vllm:dev on the real Docker engine: root, developer tools, pytest beside vLLM, the source
tree at /workspace, on the runtime image's layers. Every container is removed, also on failure."""

from __future__ import annotations

from engine_image_checks import check_dev_image


def test_dev_image_has_vllm_pytest_and_sources_on_the_runtime_layers() -> None:
    check_dev_image("vllm", "vllm, dynamo.vllm", ("/workspace",))
