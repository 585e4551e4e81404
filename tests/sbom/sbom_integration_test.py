"""The SBOM of every image but the engine ones (tests/sbom_checks.py), on the real images."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
from built_images import built_image, packaged_targets
from sbom_checks import check_contents, check_sbom, sbom_beside

from dynamo_images.cli.layers import layer_report
from dynamo_images.cli.main import main

# Checked on their own below: the EPP (no shell, no dpkg) and the base (no SBOM inside).
SEPARATE = ("docker/epp:runtime", "docker/base:runtime")


@pytest.mark.parametrize("target", packaged_targets(exclude=SEPARATE))
def test_the_sbom_lists_what_the_image_holds(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    check_contents(target, capsys)


def test_the_epp_sbom_lists_the_binarys_go_modules(capsys: pytest.CaptureFixture[str]) -> None:
    found = check_sbom("docker/epp:runtime", capsys)
    image = built_image(Path("docker.epp/runtime.docker-info.json"))
    out = docker.from_env().containers.run(image, ["--version"], remove=True).decode()
    linked = [line.split()[1] for line in out.splitlines() if line.startswith("module ")]
    assert sorted(
        f"{e.name}@{e.version}" for e in found if e.kind == "golang" and e.name != "go/stdlib"
    ) == sorted(linked)
    go = out.splitlines()[1].split()[1]  # "go go1.21.13 linux/amd64"
    assert [e.version for e in found if e.name == "go/stdlib"] == [go.removeprefix("go")]
    # inspect: the binary's layer holds the modules and our code.
    binary = layer_report(docker.from_env(), image).layers[0]
    assert {k for k in binary.packages if k.startswith("golang:")} == {
        f"golang:{e.name}" for e in found if e.kind == "golang"
    }
    assert "generic:dynamo-images" in binary.packages


def test_the_base_sbom_is_beside_it_only(capsys: pytest.CaptureFixture[str]) -> None:
    """The base carries none (a layer of its own would move every image built on it); its SBOM
    is written beside it and lists what every framework image's base layer holds."""
    base = built_image(Path("docker.base/runtime.docker-info.json"))
    assert main(["sbom", base]) == 1
    assert "carries no SBOM" in capsys.readouterr().err
    beside = {(c["name"], c["version"]) for c in sbom_beside("docker/base:runtime")["components"]}
    runtime = sbom_beside("docker/dynamo:runtime")["components"]
    assert beside == {
        (c["name"], c["version"])
        for c in runtime
        if c["purl"].startswith("pkg:deb/")
        and {"name": "dynamo-images:layer", "value": "runtime-rootfs.tar.gz"} in c["properties"]
    }


def test_the_sboms_differ_by_what_each_variant_adds() -> None:
    """runtime-aws = runtime + the EFA overlay's packages; dev = runtime + dev packages, dev
    tools and the tree; local-dev = dev."""

    def components(target: str) -> set[tuple[str, str, str]]:
        return {
            (c["purl"], c["bom-ref"].split("#")[-1], c["version"])
            for c in sbom_beside(target)["components"]
        }

    runtime, aws = components("docker/dynamo:runtime"), components("docker/dynamo:runtime-aws")
    assert runtime < aws and {ref for _, ref, _ in aws - runtime} == {
        "docker/base/efa-overlay.tar.gz"
    }
    dev, local = components("docker/dynamo:dev"), components("docker/dynamo:local-dev")
    assert runtime < dev and dev == local
    assert json.dumps(sorted(dev - runtime)).count("dev-tools.pex") >= 1
