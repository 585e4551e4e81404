"""Docker image references, parsed with the grammar of distribution/reference (what the docker CLI
and the engine accept), so that a bad `--tag` or `--image` is refused before any work."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dynamo_images.cli.errors import UsageError

# distribution/reference's regexp.go, spelled out.
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
TAG_PATTERN = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_DOMAIN_RE = re.compile(_DOMAIN, re.ASCII)
_REMAINDER_RE = re.compile(
    rf"(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{TAG_PATTERN}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
_IMAGE_ID = re.compile(r"(?:sha256:)?[0-9a-f]{12,64}", re.ASCII)
MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class Reference:
    repository: str  # domain included, as `docker tag` and `docker push` take it
    tag: str | None
    digest: str | None

    @property
    def tag_or_latest(self) -> str:
        return self.tag or "latest"

    def __str__(self) -> str:
        text = self.repository + (f":{self.tag}" if self.tag else "")
        return text + (f"@{self.digest}" if self.digest else "")


def split_domain(text: str) -> tuple[str | None, str]:
    """As the docker CLI splits `first/rest`: `first` is a registry if it has a dot or a port, is
    localhost, or has uppercase letters; otherwise it is the first path component (Docker Hub)."""
    first, has_slash, rest = text.partition("/")
    if has_slash and (
        any(c in first for c in ".:") or first == "localhost" or first != first.lower()
    ):
        return first, rest
    return None, text


def parse(text: str, what: str, *, allow_digest: bool = True) -> Reference:
    """`text` as an image reference, or a one-line UsageError naming `what` (e.g. "--tag")."""
    expected = "[REGISTRY[:PORT]/]NAME[:TAG]" + ("[@DIGEST]" if allow_digest else "")
    domain, remainder = split_domain(text)
    match = _REMAINDER_RE.fullmatch(remainder)
    if match is None or (domain is not None and not _DOMAIN_RE.fullmatch(domain)):
        raise UsageError(
            f"{what} '{text}' is not an image reference {expected}: NAME takes lowercase "
            "letters, digits and . _ - between them; TAG up to 128 of A-Z a-z 0-9 _ . -"
        )
    if match["digest"] and not allow_digest:
        raise UsageError(f"{what} '{text}' names a digest; give {expected}")
    repository = (f"{domain}/" if domain else "") + match["path"]
    if len(repository) > MAX_NAME_LENGTH:
        raise UsageError(f"{what} '{text}': the name is longer than {MAX_NAME_LENGTH} characters")
    return Reference(repository, match["tag"], match["digest"])


def is_image_id(text: str) -> bool:
    return _IMAGE_ID.fullmatch(text) is not None
