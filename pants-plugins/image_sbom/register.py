"""`./pants package` of a docker_image with an `sbom` field also writes that image's SBOM to
dist/, beside the image (the file the image carries; framework_image() sets the field). The SBOM
itself is made by the target the field names (an adhoc_tool: build-support/sbom)."""

from __future__ import annotations

from dataclasses import dataclass

from pants.backend.docker.target_types import DockerImageTarget
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.core.target_types import FileSourceField
from pants.engine.addresses import Address, AddressInput
from pants.engine.fs import CreateDigest, Digest, DigestContents, FileContent
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import (
    HydratedSources,
    HydrateSourcesRequest,
    SourcesField,
    StringField,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.engine.unions import UnionRule


@dataclass(frozen=True)
class BuiltSbomArtifact(BuiltPackageArtifact):
    # The docker backend's publish rule reads the tags of every artifact packaged for the image:
    # the SBOM has none.
    tags: tuple[str, ...] = ()


class DockerImageSbomField(StringField):
    alias = "sbom"
    help = (
        "The target (an adhoc_tool) that makes this image's SBOM: `./pants package` writes its"
        " output to dist/ beside the image. The image's build context gets it as a dependency."
    )


@dataclass(frozen=True)
class ImageSbomFieldSet(PackageFieldSet):
    required_fields = (DockerImageSbomField,)

    sbom: DockerImageSbomField


@rule(desc="Writing an image's SBOM beside it")
async def package_image_sbom(field_set: ImageSbomFieldSet) -> BuiltPackage:
    origin = f"the `{DockerImageSbomField.alias}` field of {field_set.address}"
    address = await Get(
        Address,
        AddressInput,
        AddressInput.parse(
            field_set.sbom.value or "", relative_to=field_set.address.spec_path,
            description_of_origin=origin,
        ),
    )
    wrapped = await Get(WrappedTarget, WrappedTargetRequest(address, description_of_origin=origin))
    sources = await Get(
        HydratedSources,
        HydrateSourcesRequest(
            wrapped.target[SourcesField], for_sources_types=(FileSourceField,), enable_codegen=True
        ),
    )
    contents = await Get(DigestContents, Digest, sources.snapshot.digest)
    if len(contents) != 1:
        raise ValueError(f"{address}, named by {origin}, must make one file, not {len(contents)}")
    # Where Pants writes the image's docker-info.json: dist/<path.with.dots>/<name>.cdx.json.
    here = field_set.address
    relpath = f"{here.spec_path.replace('/', '.')}/{here.target_name}.cdx.json"
    digest = await Get(Digest, CreateDigest([FileContent(relpath, contents[0].content)]))
    return BuiltPackage(digest, (BuiltSbomArtifact(relpath),))


def rules():
    return [
        *collect_rules(),
        UnionRule(PackageFieldSet, ImageSbomFieldSet),
        DockerImageTarget.register_plugin_field(DockerImageSbomField),
    ]
