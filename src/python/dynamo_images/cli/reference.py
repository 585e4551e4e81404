"""The image reference of the docs site (docker/docs): every image target, variant and knob,
rendered from docker/*/BUILD (read as `dynamo-images build` reads them) and the CLI's own tables
at the docs image's build, so that it cannot drift from the build.

    python -m dynamo_images.cli.reference REPO_ROOT > reference.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from dynamo_images import trtllm_source
from dynamo_images.cli import build, buildfiles, images

# What each target of framework_image() (and the other image directories) is.
TARGETS = {
    "runtime": "the runtime image, as user dynamo (UID 1000, GID 0)",
    "dev": "developer tools, pytest and the source tree at /workspace, as root",
    "runtime-aws": "the runtime image plus AWS EFA's libfabric and rdma-core libraries",
    "dev-aws": "the dev image plus AWS EFA's libfabric and rdma-core libraries",
    "local-dev": "the dev image with dynamo remapped to DYNAMO_UID/DYNAMO_GID (default: yours)",
    "pre-engine": "the image up to its engine wheel, which has no source here",
}
IMAGE_DIRS = {
    "epp": "the Go endpoint picker (Gateway API Inference Extension, Envoy ext_proc)",
    "docs": "this documentation site, served on port 8080",
}


def _tag(image_dir: str, target: str) -> str:
    return images.ImageRef(image_dir, target, target.removesuffix(images.EFA_SUFFIX)).latest_tag


def render(repo_root: Path) -> str:
    lines = [
        "# Image reference",
        "",
        "Generated from `docker/*/BUILD` and the CLI's tables when this site was built.",
        "",
        "## Images",
        "",
        "| Pants target | tag | what |",
        "| --- | --- | --- |",
    ]
    for image_dir, targets in buildfiles.docker_image_targets(repo_root).items():
        if image_dir == "base":
            continue  # the shared base, not an image users run
        for target in targets:
            what = (
                TARGETS.get(target, "") if image_dir in images.FRAMEWORKS else IMAGE_DIRS[image_dir]
            )
            lines.append(
                f"| `docker/{image_dir}:{target}` | `{_tag(image_dir, target)}` | {what} |"
            )
    lines += ["", "## Frameworks", "", "| framework | CUDA | KVBM |", "| --- | --- | --- |"]
    for name, facts in buildfiles.frameworks(repo_root).items():
        cuda = ", ".join(facts.cuda_versions) or "none"
        why = f" ({facts.cuda_why})" if facts.cuda_why else ""
        lines.append(f"| {name} | {cuda}{why} | refused: {facts.kvbm_refusal} |")
    lines += [
        "",
        "## Knobs",
        "",
        "`dynamo-images build` flags and the variables the BUILD files read:",
        "",
        "| flag | variable | what |",
        "| --- | --- | --- |",
    ]
    for knob in build.BUILD_KNOBS:
        lines.append(f"| `{knob.flag}` | `{knob.env_var}` | {knob.help} |")
    lines += [
        "",
        "## TensorRT-LLM sources",
        "",
        f"`{trtllm_source.SOURCE_VAR}`: {', '.join(f'`{s}`' for s in trtllm_source.SOURCES)}"
        f" (default `{trtllm_source.SOURCES[0]}`); `{trtllm_source.INDEX_VAR}` (default"
        f" `{trtllm_source.DEFAULT_INDEX_URL}`), `{trtllm_source.WHEEL_DIR_VAR}`.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    sys.stdout.write(render(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
