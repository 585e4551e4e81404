"""make_sbom: the document from real inputs is valid CycloneDX 1.6, the same inputs give the same
bytes, and an invalid document is refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sbom.make_sbom import Inputs, build, main, validate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("DYNAMO_VERSION", "v1.2.3")
    monkeypatch.setenv("DYNAMO_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("DYNAMO_SOURCE_URL", "https://example.com/dynamo-images.git")
    monkeypatch.setenv("DYNAMO_COMMIT_TIME", "2026-12-02T06:00:00+01:00")
    monkeypatch.setenv("DYNAMO_GO_VERSION", "go1.21.13")


def dev_image() -> Inputs:
    return Inputs(
        "dynamo-dev",
        interpreter=Path("docker/base/packages.lock"),
        python=["python-default:ai-dynamo", "python-default:pytest@dev-tools.pex"],
        debian=[
            "docker/base/packages.lock#runtime@runtime-rootfs.tar.gz",
            "docker/base/packages.lock#dev@dev-overlay.tar.gz",
        ],
        go=["src/go/epp/go.mod@src.go.epp.cmd.epp/epp"],
        own=["workspace.tar"],
    )


def test_a_valid_reproducible_document() -> None:
    text = build(dev_image())
    assert validate(text) is None
    assert build(dev_image()) == text
    document = json.loads(text)
    assert document["specVersion"] == "1.6"
    assert document["metadata"]["timestamp"] == "2026-12-02T05:00:00+00:00"
    assert document["metadata"]["component"]["name"] == "dynamo-dev"
    by_purl = {c["purl"]: c for c in document["components"]}
    dynamo = next(c for p, c in by_purl.items() if p.startswith("pkg:pypi/ai-dynamo@"))
    assert dynamo["hashes"][0]["alg"] == "SHA-256" and len(dynamo["hashes"][0]["content"]) == 64
    assert dynamo["externalReferences"][0]["url"].endswith(".whl")
    props = {
        p["name"]: p["value"]
        for p in by_purl[
            "pkg:pypi/pytest@"
            + next(c["version"] for c in document["components"] if c["name"] == "pytest")
        ]["properties"]
    }
    assert props == {
        "dynamo-images:input": "3rdparty/python/default.lock",
        "dynamo-images:layer": "dev-tools.pex",
    }
    assert any(p.startswith("pkg:deb/debian/libc6@") and "distro=debian-12" in p for p in by_purl)
    assert any(p.startswith("pkg:golang/google.golang.org/grpc@") for p in by_purl)
    ours = by_purl[
        "pkg:generic/dynamo-images@v1.2.3?vcs_url=git%2Bhttps://example.com/dynamo-images.git%400123456789abcdef0123456789abcdef01234567"
    ]
    assert {"name": "dynamo-images:layer", "value": "workspace.tar"} in ours["properties"]
    # The image depends on every component; ai-dynamo on its runtime.
    edges = {d["ref"]: d.get("dependsOn", []) for d in document["dependencies"]}
    assert len(edges["image:dynamo-dev"]) == len(document["components"])
    assert any("ai-dynamo-runtime" in ref for ref in edges[dynamo["bom-ref"]])


def test_a_later_debian_input_wins_for_the_same_package(tmp_path: Path) -> None:
    upgrade = tmp_path / "upgrade.lock"
    libc = next(
        line
        for line in (ROOT / "docker/base/packages.lock").read_text().splitlines()
        if line.startswith("libc6 ")
    )
    upgrade.write_text(f"libc6 9.99-1 {libc.split()[2]}\n")
    inputs = Inputs("x", debian=["docker/base/packages.lock#runtime", str(upgrade)])
    libcs = [c for c in json.loads(build(inputs))["components"] if c["name"] == "libc6"]
    assert [c["version"] for c in libcs] == ["9.99-1"]


def test_the_schema_check_fails_a_bad_document() -> None:
    document = json.loads(build(Inputs("x", debian=["docker/base/packages.lock#dev"])))
    assert validate(json.dumps(document)) is None
    document["components"][0]["hashes"] = [{"alg": "SHA-256", "content": "not-hex"}]
    error = validate(json.dumps(document))
    assert error is not None and "'not-hex' does not match" in error
    document["components"][0].pop("hashes")
    document["components"][0]["externalReferences"] = [{"type": "distribution", "url": "not a url"}]
    assert validate(json.dumps(document)) is not None


def test_the_command_writes_the_file_and_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.cdx.json"
    assert (
        main(["--image", "x", "--output", str(out), "--debian", "docker/base/packages.lock#dev"])
        == 0
    )
    assert validate(out.read_text()) is None
    assert (
        main(
            [
                "--image",
                "x",
                "--output",
                str(out),
                "--python",
                "nosuch:ai-dynamo",
                "--interpreter",
                "docker/base/packages.lock",
            ]
        )
        == 1
    )
    assert capsys.readouterr().err.startswith(
        "make_sbom: no resolve 'nosuch' in pants.toml; its resolves: docs,"
    )
    os.environ["DYNAMO_COMMIT_TIME"] = "yesterday"
    assert main(["--image", "x", "--output", str(out)]) == 1
    assert "DYNAMO_COMMIT_TIME='yesterday' is not an ISO 8601 time" in capsys.readouterr().err
