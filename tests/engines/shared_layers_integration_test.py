"""The vLLM and SGLang runtime images store their common wheels once: their layer chains share a
prefix (the base image and the `shared-*` venv slots) of at least 3 GB, which Docker counts as
shared. What is shared follows from the two lockfiles (./pants computes
DYNAMO_SHARED_DISTRIBUTIONS from them); this test checks it against what the images hold."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest
from built_images import built_image

from dynamo_images.cli.layers import Report, layer_report

IMAGES = {
    "vllm": Path("docker.vllm/runtime.docker-info.json"),
    "sglang": Path("docker.sglang/runtime.docker-info.json"),
}
MIN_SHARED_BYTES = 3_000_000_000
# Dynamo's own distributions keep their late slot even when both locks pin them alike.
LATE_SLOT = "dynamo"


@pytest.fixture(scope="module")
def reports() -> dict[str, Report]:
    client = docker.from_env()
    return {name: layer_report(client, built_image(info)) for name, info in IMAGES.items()}


def common_prefix(reports: dict[str, Report]) -> int:
    chains = [[layer.diff_id for layer in report.layers] for report in reports.values()]
    length = 0
    while all(len(chain) > length for chain in chains) and len({c[length] for c in chains}) == 1:
        length += 1
    return length


def test_layer_chains_share_a_prefix_of_at_least_3_gb(reports: dict[str, Report]) -> None:
    length = common_prefix(reports)
    vllm = reports["vllm"]
    shared_bytes = sum(layer.size for layer in vllm.layers[:length])
    shared_slots = [layer.slot for layer in vllm.layers[:length] if layer.slot]
    print(f"common prefix: {length} layers, {shared_bytes / 1e9:.2f} GB, slots {shared_slots}")
    assert shared_bytes >= MIN_SHARED_BYTES
    assert all(slot.startswith("shared-") for slot in shared_slots)
    # The layer report says which local images share each of those layers.
    sglang = docker.from_env().images.get(built_image(IMAGES["sglang"]))
    names = {*sglang.tags, sglang.short_id}
    assert all(names & set(layer.shared_with) for layer in vllm.layers[:length])


def test_docker_counts_the_prefix_as_shared(reports: dict[str, Report]) -> None:
    client = docker.from_env()
    usage = client.df()["Images"]
    for info in IMAGES.values():
        image_id = client.images.get(built_image(info)).id
        [entry] = [i for i in usage if i["Id"] == image_id]
        assert entry["SharedSize"] >= MIN_SHARED_BYTES, entry


def test_the_shared_slots_hold_what_both_locks_pin_alike(reports: dict[str, Report]) -> None:
    """Derived, not listed: every distribution the two images hold at the same version (Dynamo's
    own excepted) is in a shared slot, and the shared slots are identical in both."""

    def installed(report: Report) -> dict[str, str]:
        return {
            name: version
            for layer in report.layers
            if layer.slot
            for name, version in layer.distributions.items()
        }

    def in_shared_slots(report: Report) -> dict[str, str]:
        return {
            name: version
            for layer in report.layers
            if layer.slot and layer.slot.startswith("shared-")
            for name, version in layer.distributions.items()
        }

    vllm, sglang = installed(reports["vllm"]), installed(reports["sglang"])
    late = {
        name
        for report in reports.values()
        for layer in report.layers
        if layer.slot == LATE_SLOT
        for name in layer.distributions
    }
    alike = {n: v for n, v in vllm.items() if sglang.get(n) == v and n not in late}
    assert in_shared_slots(reports["vllm"]) == in_shared_slots(reports["sglang"])
    # Same version may still be another artifact (a placeholder, another build): at most those.
    assert set(in_shared_slots(reports["vllm"])) <= set(alike)
    assert len(in_shared_slots(reports["vllm"])) >= 100
    assert "torch" in in_shared_slots(reports["vllm"])
