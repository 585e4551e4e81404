"""`dynamo-images diff` between the vLLM and SGLang runtime images on the real Docker engine: the
shared prefix is the one the two locks give, and every distribution the diff reports as added,
removed or at another version is exactly so in the two lockfiles (every other package: in the two
images' SBOMs)."""

from __future__ import annotations

import json
from pathlib import Path

import docker
from built_images import built_image
from sbom_checks import sbom_beside

from dynamo_images.cli.diff import diff_images
from dynamo_images.cli.layers import layer_report
from dynamo_images.cli.sbom import entries


def locked(lock: str) -> dict[str, str]:
    text = Path(lock).read_text()
    body = json.loads("\n".join(line for line in text.splitlines() if not line.startswith("//")))
    return {
        r["project_name"]: r["version"]
        for resolve in body["locked_resolves"]
        for r in resolve["locked_requirements"]
    }


def packages(target: str) -> dict[str, str]:
    """What the image's SBOM lists besides Python distributions (the engines' system overlays'
    Debian packages, our own code), named as `inspect` and `diff` name them."""
    return {
        f"{e.kind}:{e.name}": e.version for e in entries(sbom_beside(target)) if e.kind != "pypi"
    }


def test_what_differs_between_the_engine_images_is_what_differs_between_their_locks() -> None:
    client = docker.from_env()
    vllm = built_image(Path("docker.vllm/runtime.docker-info.json"))
    sglang = built_image(Path("docker.sglang/runtime.docker-info.json"))
    diff = diff_images(client, vllm, sglang)
    a = layer_report(client, vllm)
    shared_slots = [layer.slot for layer in a.layers[: diff.shared_layers] if layer.slot]
    assert shared_slots and all(slot.startswith("shared-") for slot in shared_slots)
    assert diff.shared_bytes >= 3_000_000_000
    assert set(diff.inputs) == {"ai.dynamo.lock.vllm", "ai.dynamo.lock.sglang"}
    engine = next(d for d in diff.layers if d.slot == "engine")
    assert (set(engine.added), set(engine.removed)) == ({"sglang", "sglang-kernel"}, {"vllm"})
    # Each image's distributions as locked, and its other packages as its SBOM lists them.
    va = locked("3rdparty/python/vllm.lock") | packages("docker/vllm:runtime")
    vb = locked("3rdparty/python/sglang.lock") | packages("docker/sglang:runtime")
    added = {n: v for layer in diff.layers for n, v in layer.added.items()}
    removed = {n: v for layer in diff.layers for n, v in layer.removed.items()}
    # A distribution both images lock alike may sit in another slot (the slots fill by size).
    moved = {n for n in added.keys() & removed.keys() if added[n] == removed[n]}
    for name, version in added.items():
        assert vb[name] == version and (name in moved or va.get(name) != version), name
    for name, version in removed.items():
        assert va[name] == version and (name in moved or vb.get(name) != version), name
    for layer in diff.layers:
        for name, (old, new) in layer.changed.items():
            assert (va[name], vb[name]) == (old, new), name
    assert added.keys() - moved and removed.keys() - moved
