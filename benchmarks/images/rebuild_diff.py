"""`dynamo-images diff` around two rebuilds, checked against the exact expected answers (#15).

docker/dynamo:runtime is built three times in a git worktree of HEAD:
  A  as committed;
  B  after a one-line change to our code (committed in the worktree);
  C  after a lockfile change: durationpy (in Dynamo's closure: kubernetes needs it) moved in
     3rdparty/python/default.lock to the release before the locked one, with that release's
     artifacts and sha256 from PyPI (committed in the worktree).
Expected:
  A -> B  every layer shared but our code's and the SBOM's; our code's layer says only our own
          version changed; the commit is the only input label that differs; the SBOMs differ in
          our own component alone.
  B -> C  every layer shared up to durationpy's slot; that slot changed exactly durationpy's
          version; every slot after it the same files, stored again; then our code and the SBOM;
          the inputs: default.lock's digest and the commit; the SBOMs: durationpy in default.lock
          and our own version.
Prints both diffs and a verdict per check; exits 1 when any check fails. Afterwards the tags the
builds moved point at the images they named before, and the three builds' images are removed.

    python3 benchmarks/images/rebuild_diff.py      # from the repo root, as root, Docker up
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src/python"))

import docker  # noqa: E402

from dynamo_images.cli.diff import ImageDiff, diff_images, render  # noqa: E402
from dynamo_images.cli.sbom import Changes  # noqa: E402

TARGET = "docker/dynamo:runtime"
DOCKER_INFO = "dist/docker.dynamo/runtime.docker-info.json"
CHANGED_FILE = "src/python/dynamo_images/health.py"
LOCK = "3rdparty/python/default.lock"
MOVED = "durationpy"
CODE, SBOM = "/files/code/ -> /", "/files/sbom/ -> /"
OWN = "generic:dynamo-images"


def git(work: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(work), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def build(work: Path) -> str:
    subprocess.run(["./pants", "--no-pantsd", "package", TARGET], cwd=work, check=True)
    return json.loads((work / DOCKER_INFO).read_text())["image_id"]


def _split_lock(text: str) -> tuple[list[str], dict]:
    header = [line for line in text.splitlines() if line.startswith("//")]
    body = json.loads("\n".join(line for line in text.splitlines() if not line.startswith("//")))
    return header, body


def move_in_lock(lock: Path, project: str) -> tuple[str, str]:
    """Pin `project` to the release before the locked one, with PyPI's artifacts for it."""
    header, body = _split_lock(lock.read_text())
    entry = next(
        r for r in body["locked_resolves"][0]["locked_requirements"] if r["project_name"] == project
    )
    with urllib.request.urlopen(f"https://pypi.org/pypi/{project}/json", timeout=60) as reply:
        releases = json.load(reply)["releases"]
    from packaging.version import Version  # noqa: PLC0415  # pants: no-infer-dep (the host's)

    older = max(
        (v for v in releases if Version(v) < Version(entry["version"]) and releases[v]), key=Version
    )
    old = entry["version"]
    entry["version"] = older
    entry["artifacts"] = [
        {"algorithm": "sha256", "hash": f["digests"]["sha256"], "url": f["url"]}
        for f in releases[older]
    ]
    lock.write_text("\n".join(header) + "\n" + json.dumps(body, indent=2, sort_keys=True) + "\n")
    return old, older


def labels(client: docker.DockerClient, image: str) -> dict[str, str]:
    return client.images.get(image).labels or {}


def check(results: list[bool], name: str, ok: bool, detail: object = "") -> None:
    results.append(bool(ok))
    print(f"  {'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))


def check_source_change(diff: ImageDiff, a: dict, b: dict, total: int, results: list[bool]) -> None:
    own = (a["org.opencontainers.image.version"], b["org.opencontainers.image.version"])
    check(
        results,
        "all layers shared but the last two",
        diff.shared_layers == total - 2,
        diff.shared_layers,
    )
    code, sbom = diff.layers
    check(
        results,
        "our code's layer: only our version",
        (code.a, code.b, code.changed, code.added, code.removed)
        == (CODE, CODE, {OWN: own}, {}, {}),
        code,
    )
    check(
        results,
        "then the SBOM's layer",
        (sbom.a, sbom.b, sbom.same_content) == (SBOM, SBOM, False),
        sbom,
    )
    revision = "org.opencontainers.image.revision"
    check(
        results,
        "inputs: the commit only",
        diff.inputs == {revision: (a[revision], b[revision])},
        diff.inputs,
    )
    check(
        results,
        "SBOM: our own component only",
        diff.components == {"generic": Changes(changed={OWN: own})},
        diff.components,
    )


def check_lock_change(
    diff: ImageDiff, before: dict, after: dict, versions: tuple[str, str], results: list[bool]
) -> None:
    moved, *rest = diff.layers
    check(
        results,
        f"first differing layer: {MOVED}'s slot, that change only",
        (moved.changed, moved.added, moved.removed) == ({MOVED: versions}, {}, {})
        and bool(moved.slot),
        moved,
    )
    *slots, code, sbom = rest
    check(
        results,
        "every later slot: the same files, stored again",
        all(s.same_content and s.slot for s in slots),
        [(s.slot, s.same_content) for s in slots],
    )
    own = (before["org.opencontainers.image.version"], after["org.opencontainers.image.version"])
    check(
        results,
        "then our code (our version) and the SBOM",
        (code.a, code.changed, sbom.a) == (CODE, {OWN: own}, SBOM),
        (code, sbom),
    )
    expected_inputs = {
        key: (before[key], after[key])
        for key in ("ai.dynamo.lock.python-default", "org.opencontainers.image.revision")
    }
    check(
        results,
        "inputs: default.lock's digest and the commit",
        diff.inputs == expected_inputs,
        diff.inputs,
    )
    expected = {
        LOCK: Changes(changed={f"pypi:{MOVED}": versions}),
        "generic": Changes(changed={OWN: own}),
    }
    check(
        results,
        f"SBOM: {MOVED} in {LOCK}, and our version",
        diff.components == expected,
        diff.components,
    )


# The tag the builds move (pants.toml's extra_image_tags); the version tags name the worktree's
# commits, and go with the images.
LATEST = ("dynamo", "latest-dynamo-runtime")


def main() -> int:
    client = docker.from_env()
    try:
        previous = client.images.get(":".join(LATEST)).id
    except docker.errors.ImageNotFound:
        previous = None
    results: list[bool] = []
    with tempfile.TemporaryDirectory(prefix="rebuild-diff.") as tmp:
        work = Path(tmp) / "src"
        git(REPO, "worktree", "add", "--detach", str(work), "HEAD")
        images: list[str] = []
        try:
            a = build(work)
            images.append(a)
            with (work / CHANGED_FILE).open("a") as f:
                f.write("# rebuild_diff.py: a one-line change\n")
            git(work, "commit", "-qam", "rebuild_diff: one-line change")
            b = build(work)
            images.append(b)
            versions = move_in_lock(work / LOCK, MOVED)
            git(work, "commit", "-qam", f"rebuild_diff: {MOVED} {versions[0]} -> {versions[1]}")
            c = build(work)
            images.append(c)
            total = len(client.images.get(a).attrs["RootFS"]["Layers"])
            ab = diff_images(client, a, b)
            print(render(ab))
            check_source_change(ab, labels(client, a), labels(client, b), total, results)
            bc = diff_images(client, b, c)
            print(render(bc))
            check_lock_change(bc, labels(client, b), labels(client, c), versions, results)
        finally:
            if previous:
                client.images.get(previous).tag(*LATEST)
            for image in images:
                if image != previous:
                    subprocess.run(["docker", "image", "rm", "--force", image], capture_output=True)
            git(REPO, "worktree", "remove", "--force", str(work))
    print(f"rebuild_diff: {sum(results)} of {len(results)} checks passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
