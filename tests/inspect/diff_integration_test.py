"""`dynamo-images diff` between docker/dynamo:runtime and its EFA variant on the real Docker
engine: every layer of the runtime image shared, three more layers (the EFA overlay, dpkg's status
with the packages of both, then the variant's SBOM), the overlay's Debian packages named in its
layer and, from the SBOMs, as what the input docker/base/efa-overlay.tar.gz added; the EFA labels
named as the inputs that differ."""

from __future__ import annotations

from pathlib import Path

import docker
from built_images import built_image
from containers import layer_ids, run_in_image
from efa_image_checks import LABELLED, pinned

from dynamo_images.cli.diff import diff_images
from dynamo_images.cli.sbom import Changes


def dpkg(image: str) -> dict[str, str]:
    ran = run_in_image(image, "dpkg-query -W -f '${Package} ${Version}\\n'")
    assert ran.status == 0, ran.err
    return dict(line.split() for line in ran.out.splitlines())


def test_the_efa_variant_is_the_runtime_image_plus_its_overlay() -> None:
    runtime = built_image(Path("docker.dynamo/runtime.docker-info.json"))
    efa = built_image(Path("docker.dynamo/runtime-aws.docker-info.json"))
    diff = diff_images(docker.from_env(), runtime, efa)
    assert diff.shared_layers == len(layer_ids(runtime)) and not diff.base_differs
    overlay, status, sbom = diff.layers
    assert (overlay.a, overlay.b) == ("", "docker/base/efa-overlay.tar.gz -> /")
    assert (status.a, status.b) == ("", "/var/lib/dpkg/status")
    assert not (status.added or status.removed or status.changed)
    before = dpkg(runtime)
    added = {f"deb:{n}": v for n, v in dpkg(efa).items() if before.get(n) != v}
    assert len(added) >= len(pinned()) and overlay.added == added
    assert (sbom.a, sbom.b) == ("", "/files/sbom/ -> /")
    assert diff.components == {"docker/base/efa-overlay.tar.gz": Changes(added=added)}
    versions = pinned()
    assert diff.inputs == {label: ("", versions[package]) for label, package in LABELLED.items()}
