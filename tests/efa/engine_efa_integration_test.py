"""docker/vllm:runtime-aws and docker/sglang:runtime-aws on the real Docker engine: the EFA layer
(efa_image_checks), and what NIXL's libfabric backend finds there."""

from __future__ import annotations

from pathlib import Path

import pytest
from built_images import built_image
from containers import run_in_image
from efa_image_checks import check_efa_variant

NIXL_PLUGIN = (
    "/opt/dynamo/venv/lib/python3.11/site-packages/nixl_cu13.libs/nixl/libplugin_LIBFABRIC.so"
)


@pytest.mark.parametrize("framework", ["vllm", "sglang"])
def test_efa_variant(framework: str) -> None:
    check_efa_variant(framework, "runtime", "1000")


@pytest.mark.parametrize("framework", ["vllm", "sglang"])
def test_nixls_libfabric_plugin_needs_a_newer_libfabric(framework: str) -> None:
    """NIXL's libfabric plugin finds Debian's libfabric and hwloc, but needs libfabric >= 1.20
    (symbol version FABRIC_1.7) where Debian bookworm has 1.17 (docker/README.md, EFA)."""
    image = built_image(Path(f"docker.{framework}/runtime-aws.docker-info.json"))
    # ldd exits 1 for the missing symbol version (and libcuda.so.1, the driver of a GPU host).
    ran = run_in_image(image, f"ldd {NIXL_PLUGIN}")
    assert "libfabric.so.1 => /lib/x86_64-linux-gnu/libfabric.so.1" in ran.out
    assert "libhwloc.so.15 => /lib/x86_64-linux-gnu/libhwloc.so.15" in ran.out
    assert "version `FABRIC_1.7' not found" in ran.out + ran.err
