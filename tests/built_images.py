"""Which image a `runtime_package_dependencies` docker_image build produced, from the
`<path>/<name>.docker-info.json` that Pants puts in the test sandbox."""

from __future__ import annotations

import json
import re
from pathlib import Path


def built_image(docker_info: str | Path) -> str:
    """The image id, or the first tag Pants applied when it could not read the id from Docker's
    output (it then records "<unknown>", which happens when identical builds overlap)."""
    info = json.loads(Path(docker_info).read_text())
    if re.fullmatch(r"sha256:[0-9a-f]{64}", info.get("image_id", "")):
        return info["image_id"]
    return info["registries"][0]["tags"][0]["name"]


def packaged_targets(exclude: tuple[str, ...] = ()) -> list[str]:
    """The docker_image addresses (e.g. docker/dynamo:runtime) whose docker-info files are in the
    sandbox: the test's `runtime_package_dependencies`, named once, in its BUILD file."""
    found = sorted(
        f"{info.parent.name.replace('.', '/')}:{info.name.removesuffix('.docker-info.json')}"
        for info in Path().glob("docker.*/*.docker-info.json")
    )
    targets = [t for t in found if t not in exclude]
    if not targets:
        raise RuntimeError("no docker-info file in the sandbox: no runtime_package_dependencies")
    return targets
