"""Registries that `build --push` pushes to: their addresses, and a reachability check made before
any build work, so that a registry that is down costs one line, not a build."""

from __future__ import annotations

import ipaddress
import urllib.error
import urllib.request

from dynamo_images.cli import references
from dynamo_images.cli.errors import EnvironmentProblem, UsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
PROBE_TIMEOUT_SECONDS = 5


def address_of(reference: references.Reference) -> str:
    """The registry a reference is pushed to (Docker Hub when it names none)."""
    return references.split_domain(reference.repository)[0] or DOCKER_HUB


def parse_address(text: str, what: str) -> str:
    """A registry address HOST[:PORT][/PATH], as DYNAMO_REGISTRY takes it; returns HOST[:PORT]."""
    host = text.partition("/")[0]
    try:
        reference = references.parse(f"{text}/probe", what)
    except UsageError:
        reference = None
    if reference is None or references.split_domain(reference.repository)[0] != host:
        raise UsageError(
            f"{what}='{text}' is not a registry address HOST[:PORT][/PATH] "
            "(e.g. localhost:5000 or nvcr.io/nvidia)"
        )
    return host


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1 : host.index("]")]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def endpoint(address: str) -> str:
    """The registry API's base URL, as the engine reaches it: plain HTTP for loopback addresses
    (the engine's default insecure registries, 127.0.0.0/8), HTTPS for everything else."""
    if address == DOCKER_HUB:
        return f"https://{DOCKER_HUB_ENDPOINT}/v2/"
    scheme = "http" if _is_loopback(address) else "https"
    return f"{scheme}://{address}/v2/"


def check_reachable(address: str) -> None:
    """Any HTTP answer from /v2/ (401 included: credentials are checked at push) is reachable."""
    url = endpoint(address)
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_SECONDS):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise EnvironmentProblem(
            f"registry {address} is not reachable at {url} ({reason}); start it, or push "
            "somewhere else"
        ) from error
