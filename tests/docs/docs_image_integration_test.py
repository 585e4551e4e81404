"""docker/docs:runtime on the real Docker engine: lighttpd serves the site as the image's non-root
user on port 8080, the generated image reference names every variant, and a real browser (Debian's
headless Chromium) renders a page with its navigation. The container is removed, also on failure.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
from built_images import built_image

DOCKER_INFO = Path("docker.docs/runtime.docker-info.json")
PORT = 8080
# The browser the project installs (build-support/host/ensure-debian-tools.sh).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HEADLESS = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"]


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    client = docker.from_env()
    container = client.containers.run(
        built_image(DOCKER_INFO), detach=True, ports={f"{PORT}/tcp": None}
    )
    try:
        container.reload()
        bindings = container.ports[f"{PORT}/tcp"]
        assert bindings, container.ports
        host_port = bindings[0]["HostPort"]
        base = f"http://127.0.0.1:{host_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, container.logs().decode()[-2000:]
            time.sleep(0.3)
        yield base
    finally:
        container.remove(force=True)


def test_the_server_runs_as_the_non_root_user() -> None:
    config = docker.from_env().images.get(built_image(DOCKER_INFO)).attrs["Config"]
    assert config["User"] == "dynamo"
    assert f"{PORT}/tcp" in config["ExposedPorts"]


def test_pages_and_the_generated_reference_are_served(site: str) -> None:
    home = requests.get(site + "/", timeout=10)
    assert home.status_code == 200 and "dynamo-images" in home.text
    assert home.headers["Content-Type"].startswith("text/html")
    reference = requests.get(site + "/reference/", timeout=10).text
    for address in ("docker/vllm:runtime-aws", "docker/sglang:local-dev", "docker/docs:runtime"):
        assert address in reference
    assert "DYNAMO_CUDA_VERSION" in reference
    css = requests.get(site + "/css/theme.css", timeout=10)
    assert css.status_code == 200 and css.headers["Content-Type"] == "text/css"


def test_a_browser_renders_a_page_with_its_navigation(site: str, tmp_path: Path) -> None:
    assert Path(CHROMIUM).exists(), "chromium: run build-support/host/ensure-debian-tools.sh"
    url = site + "/images/"
    dom = subprocess.run(
        [*HEADLESS, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert 'class="wy-nav-side' in dom
    assert ">Image reference</a>" in dom
    shot = tmp_path / "images.png"
    subprocess.run(
        [*HEADLESS, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
