"""Checks every EFA variant (<target>-aws, framework_image() in pants-plugins/macros.py) passes on
the real Docker engine: libfabric with its EFA provider and rdma-core's libraries from Debian, at
the versions docker/base/efa-packages.lock pins and the labels carry, in one layer on top of the
image it extends."""

from __future__ import annotations

from pathlib import Path

import docker
from built_images import built_image
from containers import layer_ids, run_in_image

EFA_LOCK = Path("docker/base/efa-packages.lock")
LABELLED = {
    "ai.dynamo.efa.libfabric.version": "libfabric1",
    "ai.dynamo.efa.rdma-core.version": "libibverbs1",
}

EFA_PROBE = """
set -e
dpkg-query -W -f '${Package} ${Version}\\n' libfabric1 libibverbs1
fi_info --version | head -n 1
ldd /usr/lib/x86_64-linux-gnu/libfabric.so.1 | grep -o 'libefa.so.1 => [^ ]*'
test -f /usr/lib/x86_64-linux-gnu/libibverbs/libefa-rdmav34.so && echo efa-verbs-provider-ok
if ls /dev/infiniband/uverbs* >/dev/null 2>&1; then echo devices=yes; else echo devices=no; fi
fi_info -l | grep -o '^[a-z_0-9]*' | tr '\\n' ' '; echo
"""


def pinned() -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in EFA_LOCK.read_text().splitlines()}


def check_efa_variant(framework: str, target: str, uid: str) -> None:
    """docker/<framework>:<target>-aws: the EFA libraries at the pinned and labelled versions,
    libfabric's EFA provider linked against rdma-core's libefa, the user of the image it extends,
    and every layer of that image shared, plus one."""
    image = built_image(Path(f"docker.{framework}/{target}-aws.docker-info.json"))
    base = built_image(Path(f"docker.{framework}/{target}.docker-info.json"))
    ran = run_in_image(image, f"id -u; {EFA_PROBE}")
    assert ran.status == 0, ran.out + ran.err
    lines = ran.out.splitlines()
    versions = pinned()
    assert lines[0] == uid
    assert lines[1:3] == [
        f"libfabric1 {versions['libfabric1']}",
        f"libibverbs1 {versions['libibverbs1']}",
    ]
    assert lines[3] == f"fi_info: {versions['libfabric1'].split('-')[0]}"
    assert lines[4] == "libefa.so.1 => /lib/x86_64-linux-gnu/libefa.so.1"
    assert lines[5] == "efa-verbs-provider-ok"
    providers = lines[7].split()
    assert "tcp" in providers
    # libfabric registers its EFA provider only where an EFA device is present (docker/README.md).
    assert ("efa" in providers) == (lines[6] == "devices=yes"), lines
    assert ran.err.startswith(f"== {framework}-{target}-aws ")
    labels = docker.from_env().images.get(image).labels
    for label, package in LABELLED.items():
        assert labels[label] == versions[package], label
    # Every layer of the image it extends, then the overlay, dpkg's status with the packages of
    # both (src/python/dynamo_images/dpkg_status.py) and its own SBOM.
    assert layer_ids(image)[:-3] == layer_ids(base)
