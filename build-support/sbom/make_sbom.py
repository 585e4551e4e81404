"""Write an image's CycloneDX SBOM from the inputs it is built from, checked against the CycloneDX
1.6 JSON schema before it is written (a document that fails the schema fails the build).

    python -m sbom.make_sbom --image vllm-runtime --output docker/vllm/runtime.cdx.json \\
        --interpreter docker/base/packages.lock \\
        --python vllm:ai-dynamo,cuda-toolkit \\
        --debian 'docker/base/packages.lock#runtime@runtime-rootfs.tar.gz' \\
        --debian docker/vllm/system-overlay.tar.gz --own src/python/dynamo_images/__init__.py

Inputs (each may repeat; `@LAYER` is text of the Dockerfile instruction that adds them, which
`dynamo-images inspect` matches to name the packages of each layer):
  --python RESOLVE:NAME[,NAME...][@LAYER]
                                        the closure of those requirements in the resolve's lock
                                        (pants.toml), for the interpreter that --interpreter pins;
                                        version, sha256 and URL of the artifact installed
  --debian FILE[#SECTION][@LAYER]       Debian packages from a lock file (section) or from an
                                        overlay tarball's record (default layer: FILE)
  --go GO_MOD[@LAYER]                   the Go modules of a binary, with go.sum's hashes, and its
                                        toolchain (DYNAMO_GO_VERSION)
  --own LAYER                           this project's code at DYNAMO_VERSION / DYNAMO_COMMIT_SHA
  --base-image REF                      an upstream base image (DYNAMO_BASE_IMAGE), by name only
Build metadata comes from the environment ./pants exports: DYNAMO_VERSION, DYNAMO_COMMIT_SHA,
DYNAMO_COMMIT_TIME (the document's timestamp: the same commit gives the same bytes) and
DYNAMO_SOURCE_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from jsonschema import Draft7Validator  # type: ignore[import-untyped]
from packageurl import PackageURL

from sbom import debian_packages, go_modules, python_closure

# Property names of our own (CycloneDX's custom-property convention: a namespace prefix).
INPUT = "dynamo-images:input"
LAYER = "dynamo-images:layer"
COMMIT = "dynamo-images:commit"
GO_SUM = "dynamo-images:go.sum"
DEBIAN_DISTRO = "debian-12"


class SbomError(ValueError):
    pass


@dataclass
class Inputs:
    image: str
    interpreter: Path | None = None
    python: list[str] = field(default_factory=list)
    debian: list[str] = field(default_factory=list)
    go: list[str] = field(default_factory=list)
    own: list[str] = field(default_factory=list)
    base_image: str = ""
    pants_toml: Path = Path("pants.toml")


def _split(spec: str) -> tuple[str, str]:
    path, _, layer = spec.partition("@")
    return path, layer


def _properties(**values: str) -> list[Property]:
    names = {"input": INPUT, "layer": LAYER, "commit": COMMIT, "go_sum": GO_SUM}
    return [Property(name=names[k], value=v) for k, v in values.items() if v]


Edges = list[tuple[Component, list[Component]]]


def lock_of(resolve: str, pants_toml: Path) -> str:
    """The lockfile of a resolve, from pants.toml's [python.resolves]."""
    resolves = tomllib.loads(pants_toml.read_text()).get("python", {}).get("resolves", {})
    if resolve not in resolves:
        raise SbomError(
            f"no resolve {resolve!r} in {pants_toml}; its resolves: {', '.join(sorted(resolves))}"
        )
    return str(resolves[resolve])


def _python_components(
    spec: str, interpreter: python_closure.Interpreter, pants_toml: Path
) -> tuple[list[Component], Edges]:
    """The closure's components, and which of them each one requires."""
    where, layer = _split(spec)
    resolve, _, names = where.partition(":")
    if not names:
        raise SbomError(f"--python {spec!r}: expected RESOLVE:NAME[,NAME...][@LAYER]")
    lock = lock_of(resolve, pants_toml)
    out = []
    refs = {}
    distributions = python_closure.closure(Path(lock), names.split(","), interpreter)
    for dist in distributions:
        purl = PackageURL("pypi", name=dist.name, version=dist.version)
        component = Component(
            type=ComponentType.LIBRARY,
            name=dist.name,
            version=dist.version,
            purl=purl,
            # Unique in the document: the same distribution may be in two venvs (two layers).
            bom_ref=f"{purl.to_string()}#{lock}" + (f"@{layer}" if layer else ""),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=dist.sha256)],
            external_references=[
                ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(dist.url))
            ],
            properties=_properties(input=lock, layer=layer),
        )
        refs[dist.name] = component
        out.append(component)
    edges = [(refs[d.name], [refs[n] for n in d.requires]) for d in distributions if d.requires]
    return out, edges


def _debian_components(spec: str) -> list[Component]:
    where, layer = _split(spec)
    path, _, section = where.partition("#")
    out = []
    for package in debian_packages.read(Path(path), section):
        purl = PackageURL(
            "deb",
            namespace="debian",
            name=package.name,
            version=package.version,
            qualifiers={"arch": package.arch, "distro": DEBIAN_DISTRO},
        )
        out.append(
            Component(
                type=ComponentType.LIBRARY
                if package.name.startswith("lib")
                else ComponentType.APPLICATION,
                name=package.name,
                version=package.version,
                purl=purl,
                bom_ref=f"{purl.to_string()}#{where}",
                properties=_properties(input=where, layer=layer or path),
            )
        )
    return out


def _go_components(spec: str, go_version: str) -> list[Component]:
    go_mod, layer = _split(spec)
    out = []
    for module in go_modules.read(Path(go_mod)):
        namespace, _, name = module.path.rpartition("/")
        purl = PackageURL("golang", namespace=namespace or None, name=name, version=module.version)
        out.append(
            Component(
                type=ComponentType.LIBRARY,
                name=module.path,
                version=module.version,
                purl=purl,
                bom_ref=f"{purl.to_string()}#{go_mod}",
                properties=_properties(input=go_mod, layer=layer, go_sum=module.h1),
            )
        )
    if go_version:
        # The standard library and runtime linked into the binary.
        purl = PackageURL("golang", name="stdlib", version=go_version.removeprefix("go"))
        out.append(
            Component(
                type=ComponentType.LIBRARY,
                name="stdlib",
                group="go",
                version=purl.version,
                purl=purl,
                bom_ref=f"{purl.to_string()}#{go_mod}",
                properties=_properties(input="pants.toml", layer=layer),
            )
        )
    return out


def _metadata() -> dict[str, str]:
    return {
        "version": os.environ.get("DYNAMO_VERSION", "") or "unversioned",
        "commit": os.environ.get("DYNAMO_COMMIT_SHA", "") or "unknown",
        "source": os.environ.get("DYNAMO_SOURCE_URL", "") or "unknown",
        "time": os.environ.get("DYNAMO_COMMIT_TIME", ""),
    }


def _own_component(layer: str, meta: dict[str, str]) -> Component:
    qualifiers = {}
    if meta["source"] != "unknown" and meta["commit"] != "unknown":
        qualifiers["vcs_url"] = f"git+{meta['source']}@{meta['commit']}"
    purl = PackageURL(
        "generic", name="dynamo-images", version=meta["version"], qualifiers=qualifiers
    )
    return Component(
        type=ComponentType.APPLICATION,
        name="dynamo-images",
        version=meta["version"],
        purl=purl,
        bom_ref=f"{purl.to_string()}#{layer}",
        properties=_properties(layer=layer, commit=meta["commit"]),
    )


def _timestamp(text: str) -> datetime:
    if not text:
        return datetime.fromtimestamp(0, UTC)
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        raise SbomError(f"DYNAMO_COMMIT_TIME={text!r} is not an ISO 8601 time") from None


def _fast_iri_references() -> None:
    """Check ASCII IRI references as URI references, which they then are (RFC 3987, 3.1): the
    IRI grammar's Earley parser (rfc3987-syntax) takes ~0.6 s per URL, minutes for the vLLM
    image's 250 wheel URLs. Others keep the IRI check. (The format checker CycloneDX's validator
    uses is jsonschema's Draft 7 one, shared by the process.)"""
    checkers = Draft7Validator.FORMAT_CHECKER.checkers
    if "iri-reference" not in checkers or "uri-reference" not in checkers:
        return
    iri, iri_raises = checkers["iri-reference"]
    uri, uri_raises = checkers["uri-reference"]

    def check(instance: object) -> bool:
        if isinstance(instance, str) and instance.isascii():
            return bool(uri(instance))
        return bool(iri(instance))

    raises = tuple(
        r
        for group in (iri_raises, uri_raises)
        for r in (group if isinstance(group, tuple) else (group,))
    )
    checkers["iri-reference"] = (check, raises)


def validate(text: str) -> str | None:
    """The first CycloneDX 1.6 schema error of a JSON document, or None."""
    _fast_iri_references()
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    return None if error is None else str(error).splitlines()[0]


def build(inputs: Inputs) -> str:
    """The SBOM as CycloneDX 1.6 JSON, validated against the schema."""
    meta = _metadata()
    interpreter = None
    if inputs.python:
        if inputs.interpreter is None:
            raise SbomError("--python needs --interpreter (the packages.lock that pins CPython)")
        interpreter = python_closure.interpreter_from(inputs.interpreter)
    components: list[Component] = []
    edges: Edges = []
    for spec in inputs.python:
        assert interpreter is not None
        found, found_edges = _python_components(spec, interpreter, inputs.pants_toml)
        components += found
        edges += found_edges
    # A later Debian input that holds a package again (an overlay's upgrade) is what the image
    # has: the layer on top wins.
    debian: dict[str, Component] = {}
    for spec in inputs.debian:
        for component in _debian_components(spec):
            debian.pop(component.name, None)
            debian[component.name] = component
    components += debian.values()
    for spec in inputs.go:
        components += _go_components(spec, os.environ.get("DYNAMO_GO_VERSION", ""))
    components += [_own_component(layer, meta) for layer in inputs.own]
    if inputs.base_image:
        components.append(
            Component(
                type=ComponentType.CONTAINER,
                name=inputs.base_image,
                bom_ref=f"base:{inputs.base_image}",
                description="the upstream base (DYNAMO_BASE_IMAGE); its packages are not listed",
            )
        )

    image = Component(
        type=ComponentType.CONTAINER,
        name=inputs.image,
        version=meta["version"],
        bom_ref=f"image:{inputs.image}",
        properties=_properties(commit=meta["commit"]),
        external_references=(
            [ExternalReference(type=ExternalReferenceType.VCS, url=XsUri(meta["source"]))]
            if meta["source"] != "unknown"
            else []
        ),
    )
    identity = json.dumps(
        [inputs.image, meta["version"], meta["commit"], sorted(str(c.bom_ref) for c in components)]
    )
    bom = Bom(
        # Derived from the content, not random: the same inputs give the same document.
        serial_number=uuid.uuid5(uuid.NAMESPACE_URL, identity),
        metadata=BomMetaData(component=image, timestamp=_timestamp(meta["time"])),
        components=components,
    )
    bom.register_dependency(image, components)
    for component, requires in edges:
        bom.register_dependency(component, requires)
    text = JsonV1Dot6(bom).output_as_string(indent=1)
    error = validate(text)
    if error is not None:
        raise SbomError(f"the SBOM of {inputs.image} fails the CycloneDX 1.6 schema: {error}")
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", required=True, help="the image's name, e.g. vllm-runtime")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--interpreter", type=Path, help="packages.lock that pins the CPython")
    for name in ("python", "debian", "go", "own"):
        parser.add_argument(f"--{name}", action="append", default=[])
    parser.add_argument("--base-image", default="")
    args = parser.parse_args(argv)
    inputs = Inputs(
        args.image, args.interpreter, args.python, args.debian, args.go, args.own, args.base_image
    )
    try:
        text = build(inputs)
    except (
        SbomError,
        python_closure.ClosureError,
        debian_packages.PackagesError,
        go_modules.ModulesError,
        OSError,
    ) as error:
        print(f"make_sbom: {error}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
