"""Write a metadata-only wheel that stands in for a PyPI package that cannot be installed offline.

Some pinned dependencies (ai-dynamo 1.6.1 -> aisimulate==0.13.0) are sdists on PyPI whose build step
downloads the real wheel from NVIDIA's index, which these machines cannot reach. pex 2.1.137 cannot
exclude a transitive requirement, so the resolve is satisfied with a wheel of the same name and
version that declares no modules and no dependencies. The output is byte-for-byte reproducible, so
the lockfile's sha256 for it is stable.

Usage: python make_placeholder_wheel.py NAME VERSION OUT_DIR "why it is a placeholder"
"""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

# A fixed timestamp keeps the zip reproducible (zip cannot store dates before 1980).
EPOCH = (1980, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def placeholder_wheel(name: str, version: str, out_dir: Path, reason: str) -> Path:
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{info}/METADATA": (
            "Metadata-Version: 2.1\n"
            f"Name: {name}\n"
            f"Version: {version}\n"
            f"Summary: Placeholder for {name} {version} (no modules): {reason}\n"
        ).encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: dynamo-images placeholder\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()

    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            entry = zipfile.ZipInfo(path, date_time=EPOCH)
            entry.external_attr = 0o644 << 16
            zf.writestr(entry, data, zipfile.ZIP_DEFLATED)
    return wheel


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__.strip().splitlines()[-1])
    print(placeholder_wheel(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]))
