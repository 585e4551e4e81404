"""`./pants publish` to a real registry and back, in both registry layouts.

For each layout (docker/README.md, Publishing): start a registry (registry_server.py), run
`./pants publish docker/dynamo:runtime` with DYNAMO_REGISTRY pointing at it, check the registry
holds exactly the tags Pants reported for it, remove those tags locally, pull them back and check
the digest and image id are the ones pushed. Then the refusals: publish without DYNAMO_REGISTRY,
and `dynamo-images build --push` to a registry that is down, each one line. Prints what it saw;
exits 1 on any mismatch. Run from the checkout root (.ci/run does, after packaging):

    PYTHONPATH=build-support python3 -m host.publish_round_trip
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from host.registry_server import free_port, running_registry, tags

TARGET = "docker/dynamo:runtime"
# Layout -> the path under the registry address, as a user would give DYNAMO_REGISTRY.
LAYOUTS = {"dynamo": "", "upstream": "/nvidia"}


class Mismatch(Exception):
    pass


def docker(*argv: str) -> str:
    return subprocess.run(
        ["docker", *argv], capture_output=True, text=True, check=True
    ).stdout.strip()


def repo_digest(tag: str) -> str:
    repository = tag.rsplit(":", 1)[0]
    digests = json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}", tag))
    found = [d for d in digests if d.startswith(f"{repository}@")]
    if not found:
        raise Mismatch(f"{tag}: no digest for {repository} in {digests}")
    return found[0]


def published_tags(report: Path) -> list[str]:
    """What Pants says it pushed ([publish].output), and that it pushed nothing else."""
    entries = json.loads(report.read_text())
    return sorted(name for entry in entries if entry["published"] for name in entry["names"])


def round_trip(layout: str, work: Path) -> None:
    with running_registry(work / layout) as address:
        registry = address + LAYOUTS[layout]
        env = {**os.environ, "DYNAMO_REGISTRY": registry, "DYNAMO_REGISTRY_LAYOUT": layout}
        report = work / f"{layout}-publish.json"
        # docker push's progress goes to the log; a failure shows its tail.
        with (work / f"{layout}-publish.log").open("w+") as log:
            done = subprocess.run(
                ["./pants", "publish", f"--publish-output={report}", TARGET],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
            if done.returncode != 0:
                log.seek(0)
                raise Mismatch(f"./pants publish exited {done.returncode}: {log.read()[-3000:]}")
        pushed = published_tags(report)
        strays = [tag for tag in pushed if not tag.startswith(f"{address}/")]
        if not pushed or strays:
            raise Mismatch(f"{layout}: Pants pushed {pushed}, expected only {address}/...")
        image_id = docker("image", "inspect", "--format", "{{.Id}}", pushed[0])
        by_repository: dict[str, list[str]] = {}
        for tag in pushed:
            repository, _, name = tag.removeprefix(f"{address}/").rpartition(":")
            by_repository.setdefault(repository, []).append(name)
        for repository, names in by_repository.items():
            held = tags(address, repository)
            if held != sorted(names):
                raise Mismatch(f"{layout}: registry holds {repository}:{held}, pushed {names}")
        digests = {tag: repo_digest(tag) for tag in pushed}
        print(f"layout {layout}: DYNAMO_REGISTRY={registry} pushed exactly:")
        for tag in pushed:
            print(f"  {tag}  {digests[tag].split('@')[1]}")
        docker("rmi", *pushed)
        for tag in pushed:
            docker("pull", "--quiet", tag)
            if repo_digest(tag) != digests[tag]:
                raise Mismatch(f"{tag}: pulled {repo_digest(tag)}, pushed {digests[tag]}")
            pulled_id = docker("image", "inspect", "--format", "{{.Id}}", tag)
            if pulled_id != image_id:
                raise Mismatch(f"{tag}: pulled image {pulled_id}, built {image_id}")
        print(f"  removed locally and pulled back: same digests, image {image_id[:19]}")
        docker("rmi", *pushed)


def one_line_refusal(argv: list[str], env: dict[str, str], expected_rc: int, start: str) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith(start)]
    if done.returncode != expected_rc or len(ours) != 1:
        raise Mismatch(f"{argv}: rc {done.returncode}, stderr {done.stderr!r}")
    print(f"refused (rc {done.returncode}): {ours[0]}")


def main() -> int:
    try:
        with tempfile.TemporaryDirectory(prefix="publish-round-trip-") as work:
            for layout in LAYOUTS:
                round_trip(layout, Path(work))
        bare = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMO_REGISTRY")}
        one_line_refusal(["./pants", "publish", TARGET], bare, 2, "pants: publish needs")
        down = {**bare, "DYNAMO_REGISTRY": f"localhost:{free_port()}"}
        cli = ["./pants", "run", "src/python/dynamo_images/cli:dynamo-images", "--"]
        one_line_refusal(
            [*cli, "build", "--framework", "dynamo", "--target", "runtime", "--push"],
            down,
            1,
            "dynamo-images: error: registry ",
        )
    except (Mismatch, subprocess.CalledProcessError, RuntimeError) as error:
        detail = getattr(error, "stderr", "") or ""
        print(f"publish round trip: FAILED: {error} {detail}".strip(), file=sys.stderr)
        return 1
    print("publish round trip: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
