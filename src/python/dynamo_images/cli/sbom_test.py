"""entries() and compare_entries(): what inspect and diff read from an SBOM."""

from __future__ import annotations

from dynamo_images.cli.sbom import Changes, Entry, compare_entries, entries


def component(purl: str, name: str, version: str, **props: str) -> dict:
    names = {"input": "dynamo-images:input", "layer": "dynamo-images:layer"}
    return {
        "purl": purl,
        "name": name,
        "version": version,
        "properties": [{"name": names[k], "value": v} for k, v in props.items()],
    }


def test_entries_carry_kind_input_and_layer() -> None:
    document = {
        "components": [
            component(
                "pkg:pypi/torch@2.13.0", "torch", "2.13.0", input="3rdparty/python/vllm.lock"
            ),
            component(
                "pkg:deb/debian/libc6@2.36-9?arch=amd64",
                "libc6",
                "2.36-9",
                input="x.lock#runtime",
                layer="runtime-rootfs.tar.gz",
            ),
            {**component("pkg:golang/stdlib@1.21.13", "stdlib", "1.21.13"), "group": "go"},
        ]
    }
    assert entries(document) == [
        Entry("pypi", "torch", "2.13.0", "3rdparty/python/vllm.lock"),
        Entry("deb", "libc6", "2.36-9", "x.lock#runtime", "runtime-rootfs.tar.gz"),
        Entry("golang", "go/stdlib", "1.21.13"),
    ]


def test_changes_per_input() -> None:
    a = [
        Entry("pypi", "torch", "2.13.0", "v.lock"),
        Entry("pypi", "six", "1", "v.lock"),
        Entry("deb", "libc6", "1", "p.lock"),
    ]
    b = [
        Entry("pypi", "torch", "2.14.0", "v.lock"),
        Entry("pypi", "idna", "3", "v.lock"),
        Entry("deb", "libc6", "1", "p.lock"),
        Entry("generic", "dynamo-images", "v2"),
    ]
    assert compare_entries(a, b) == {
        "generic": Changes(added={"generic:dynamo-images": "v2"}),
        "v.lock": Changes(
            added={"pypi:idna": "3"},
            removed={"pypi:six": "1"},
            changed={"pypi:torch": ("2.13.0", "2.14.0")},
        ),
    }
