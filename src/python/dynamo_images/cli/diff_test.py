"""compare(): which layers two reports share, what changed in the others, which inputs differ."""

from __future__ import annotations

from dynamo_images.cli.diff import compare
from dynamo_images.cli.layers import Layer, Report


def layer(index: int, diff_id: str, slot: str | None = None, **dists: str) -> Layer:
    return Layer(
        index,
        diff_id,
        100 * (index + 1),
        f"COPY /layers/{slot}/ /" if slot else "RUN x",
        slot=slot,
        distributions=dict(dists),
    )


def test_shared_prefix_changed_slots_and_inputs() -> None:
    a = Report(
        "a",
        "sha256:a",
        0,
        [
            layer(0, "base"),
            layer(1, "s1", "shared-1", torch="2.13.0"),
            layer(2, "e-a", "engine", vllm="0.31.0"),
            layer(3, "empty", "cuda-2"),
            layer(4, "t-a", "third-party-1", numpy="2.3.5", regex="1"),
        ],
    )
    b = Report(
        "b",
        "sha256:b",
        0,
        [
            layer(0, "base"),
            layer(1, "s1", "shared-1", torch="2.13.0"),
            layer(2, "e-b", "engine", sglang="0.5.21"),
            layer(3, "empty", "cuda-2"),
            layer(4, "t-b", "third-party-1", numpy="2.4.0", pillow="12"),
            layer(5, "extra"),
        ],
    )
    diff = compare(
        a,
        b,
        {"ai.dynamo.lock.vllm": "sha256:1", "org.opencontainers.image.revision": "c1", "x": "1"},
        {"ai.dynamo.lock.sglang": "sha256:2", "org.opencontainers.image.revision": "c1", "x": "2"},
    )
    assert (diff.shared_layers, diff.shared_bytes, diff.base_differs) == (2, 300, False)
    engine, cuda, third, extra = diff.layers
    assert (engine.slot, engine.added, engine.removed) == (
        "engine",
        {"sglang": "0.5.21"},
        {"vllm": "0.31.0"},
    )
    assert cuda.same_content and not engine.same_content
    assert (third.added, third.removed, third.changed) == (
        {"pillow": "12"},
        {"regex": "1"},
        {"numpy": ("2.3.5", "2.4.0")},
    )
    assert (extra.index, extra.a, extra.slot) == (5, "", None)
    # Only labels that name inputs, and only those that differ.
    assert diff.inputs == {
        "ai.dynamo.lock.sglang": ("", "sha256:2"),
        "ai.dynamo.lock.vllm": ("sha256:1", ""),
    }


def test_a_different_base_shares_nothing() -> None:
    a = Report("a", "sha256:a", 0, [layer(0, "base-1"), layer(1, "same")])
    b = Report("b", "sha256:b", 0, [layer(0, "base-2"), layer(1, "same")])
    diff = compare(a, b, {}, {})
    assert (diff.shared_layers, diff.base_differs) == (0, True)
    assert [d.same_content for d in diff.layers] == [False, True]


def test_packages_of_a_layer_only_one_image_has_are_added() -> None:
    a = Report("a", "sha256:a", 0, [layer(0, "base")])
    efa = Layer(
        1,
        "efa",
        10,
        "ADD docker/base/efa-overlay.tar.gz /",
        packages={"deb:libfabric1": "1.17.0-3"},
    )
    b = Report("b", "sha256:b", 0, [layer(0, "base"), efa])
    [added] = compare(a, b, {}, {}).layers
    assert (added.slot, added.added, added.removed) == (None, {"deb:libfabric1": "1.17.0-3"}, {})
