"""What every image's SBOM must say, checked against the image itself on the real Docker engine:
the SBOM the image carries is the file ./pants package wrote beside it; its Python distributions
are those installed in each venv, its Debian packages those dpkg has, its Go modules those the
binary reports; `dynamo-images sbom` prints it and `inspect` names each layer's packages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import docker
from built_images import built_image
from containers import run_in_image

from dynamo_images.cli.layers import layer_report
from dynamo_images.cli.main import main
from dynamo_images.cli.sbom import SBOM_LABEL, entries, image_sbom

SBOM_PATH = "/opt/dynamo/sbom.cdx.json"
# Python environments of the framework images: (site-packages, the SBOM layer text that marks
# its components; "" for the Dynamo venv, whose slots `inspect` reads from their manifests).
VENVS = (
    ("/opt/dynamo/venv/lib/python3.11/site-packages", ""),
    ("/opt/dynamo/dev-tools/lib/python3.11/site-packages", "dev-tools.pex"),
)
PROBE = """
dpkg-query -W -f '${Package} ${Version}\\n'
for site in SITES; do
  echo "== $site"
  if [ -d "$site" ]; then python3.11 -c 'import importlib.metadata as m, json, sys
found = m.distributions(path=[sys.argv[1]])
print(json.dumps(sorted([d.metadata["Name"], d.version] for d in found)))' "$site"; fi
done
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def sbom_beside(target: str) -> dict:
    """The SBOM ./pants package wrote beside the image (in the test's sandbox, as in dist/)."""
    path, name = target.split(":")
    return json.loads(Path(f"{path.replace('/', '.')}/{name}.cdx.json").read_text())


def check_sbom(target: str, capsys) -> list:
    """The image of `target` (e.g. docker/dynamo:runtime) carries its SBOM, the same as beside
    it, and `dynamo-images sbom` prints it. Returns its entries."""
    path, name = target.split(":")
    image = built_image(Path(f"{path.replace('/', '.')}/{name}.docker-info.json"))
    client = docker.from_env()
    assert client.images.get(image).labels[SBOM_LABEL] == SBOM_PATH
    document = image_sbom(client, image)
    assert document == sbom_beside(target)
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    labels = client.images.get(image).labels
    component = document["metadata"]["component"]
    assert component["version"] == labels["org.opencontainers.image.version"]
    assert {
        "name": "dynamo-images:commit",
        "value": labels["org.opencontainers.image.revision"],
    } in component["properties"]
    capsys.readouterr()
    assert main(["sbom", image]) == 0
    assert json.loads(capsys.readouterr().out) == document
    return entries(document)


def check_contents(target: str, capsys) -> None:
    """check_sbom(), and the SBOM lists exactly what the image holds: dpkg's packages and every
    venv's distributions (an image with a shell and Debian's CPython)."""
    found = check_sbom(target, capsys)
    path, name = target.split(":")
    image = built_image(Path(f"{path.replace('/', '.')}/{name}.docker-info.json"))
    ran = run_in_image(image, PROBE.replace("SITES", " ".join(s for s, _ in VENVS)))
    assert ran.status == 0, ran.err
    dpkg, *sites = ran.out.split("== ")
    listed = {(e.name, e.version) for e in found if e.kind == "deb"}
    # Every overlay's packages, also where one is ADDed onto another (dpkg_status.py).
    in_dpkg = {tuple(line.split()) for line in dpkg.splitlines()}
    assert in_dpkg == listed, (sorted(in_dpkg - listed), sorted(listed - in_dpkg))
    for (site, layer), listing in zip(VENVS, sites, strict=True):
        lines = listing.splitlines()
        installed = (
            {(canonical(n), v) for n, v in json.loads(lines[1])} if len(lines) > 1 else set()
        )
        listed = {(e.name, e.version) for e in found if e.kind == "pypi" and e.layer == layer}
        assert installed == listed, site
    # inspect: the base's layer holds its Debian packages, as the SBOM says.
    report = layer_report(docker.from_env(), image)
    base = next(layer for layer in report.layers if "runtime-rootfs.tar.gz" in layer.instruction)
    rootfs = {f"deb:{e.name}": e.version for e in found if e.layer == "runtime-rootfs.tar.gz"}
    assert base.packages == rootfs and len(rootfs) > 100
    assert report.layers[-1].instruction == "COPY /files/sbom/ /"
