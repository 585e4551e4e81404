"""docker/dynamo:local-dev on the real Docker engine: user dynamo remapped to the UID/GID given at
build time (DYNAMO_UID/DYNAMO_GID, which `dynamo-images build --target local-dev --uid --gid`
sets; .ci/run gives 4321/4321), GID 0 kept as a supplementary group, passwordless sudo, and files
written in a mounted directory owned by that UID/GID on the host. Containers are removed, also
on failure."""

from __future__ import annotations

import os
from pathlib import Path

import docker
import pytest
from built_images import built_image
from containers import layer_ids, run_in_image

DOCKER_INFO = Path("docker.dynamo/local-dev.docker-info.json")
DEV_DOCKER_INFO = Path("docker.dynamo/dev.docker-info.json")


@pytest.fixture(scope="module")
def image() -> str:
    return built_image(DOCKER_INFO)


def given(image: str) -> tuple[int, int]:
    labels = docker.from_env().images.get(image).labels
    return int(labels["ai.dynamo.local-dev.uid"]), int(labels["ai.dynamo.local-dev.gid"])


def test_files_written_in_a_mounted_directory_belong_to_the_given_uid_and_gid(
    image: str, tmp_path: Path
) -> None:
    uid, gid = given(image)
    mounted = tmp_path / "checkout"
    mounted.mkdir()
    mounted.chmod(0o777)
    ran = run_in_image(
        image,
        "touch /workspace/checkout/made-in-container && mkdir /workspace/checkout/dir",
        volumes={str(mounted): {"bind": "/workspace/checkout", "mode": "rw"}},
    )
    assert ran.status == 0, ran.err
    for path in (mounted / "made-in-container", mounted / "dir"):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (uid, gid), path


def test_the_user_is_remapped_with_sudo_and_group_0(image: str) -> None:
    uid, gid = given(image)
    ran = run_in_image(
        image,
        "id -u; id -g; id -Gn | tr ' ' '\\n' | grep -cx -e root -e sudo; sudo -n id -u;"
        " stat -c '%u %g' /workspace /home/dynamo; echo $HOME; touch $HOME/x && echo home-ok",
    )
    assert ran.status == 0, ran.err
    owner = [str(uid), str(gid)]
    # uid, primary gid, [root, sudo] among the groups, sudo's uid, /workspace, home, $HOME
    assert ran.out.split() == [*owner, "2", "0", *owner, *owner, "/home/dynamo", "home-ok"]
    assert ran.err.startswith("== dynamo-local-dev ")


def test_it_is_the_dev_image_plus_the_remap(image: str) -> None:
    dev = layer_ids(built_image(DEV_DOCKER_INFO))
    assert layer_ids(image)[: len(dev)] == dev
