"""Container health check: healthy when every component that dynamo-launch started answers.

Used as the images' Docker HEALTHCHECK and as a Kubernetes exec probe. It reads the launcher's
state file; `--url` checks explicit endpoints instead (e.g. a frontend started by hand). With
neither, there is nothing to judge, and the container counts as healthy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dynamo_images.launch import DEFAULT_STATE_FILE, http_ok


def check(state_file: Path, urls: Sequence[str], timeout: float) -> tuple[bool, list[str]]:
    """Return (healthy, one line per checked component)."""
    targets: list[tuple[str, str | None, int | None]] = [(url, url, None) for url in urls]
    if not urls:
        if not state_file.exists():
            return True, [
                f"no {state_file} (dynamo-launch not running) and no --url: nothing to check"
            ]
        state = json.loads(state_file.read_text())
        targets = [(c["name"], c.get("health_url"), c.get("pid")) for c in state["components"]]

    healthy = True
    lines = []
    for name, url, pid in targets:
        if pid is not None and not _alive(pid):
            healthy = False
            lines.append(f"{name}: process {pid} is gone")
        elif url is None:
            lines.append(f"{name}: running (no health endpoint)")
        elif http_ok(url, timeout=timeout):
            lines.append(f"{name}: ok ({url})")
        else:
            healthy = False
            lines.append(f"{name}: unhealthy ({url})")
    return healthy, lines


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dynamo-health", description=__doc__.splitlines()[0])
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE)
    parser.add_argument(
        "--url", action="append", default=[], help="health URL to check (repeatable)"
    )
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    healthy, lines = check(args.state_file, args.url, args.timeout)
    for line in lines:
        print(line)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
