"""The frameworks' own source distributions, pinned by version and SHA-256.

The conformance suites run Django's, Flask's and Starlette's *own* session tests, unmodified,
against ormsession. The sdists are fetched once with pip (from the configured package index) into
``.conformance-cache/`` beside the project, checked against their pinned hashes, and
unpacked there; later runs reuse them.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DJANGO", "FLASK", "STARLETTE", "Sdist", "unpacked"]

CACHE = Path(__file__).resolve().parents[2] / ".conformance-cache"


@dataclass(frozen=True)
class Sdist:
    name: str
    version: str
    sha256: str

    @property
    def archive(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"


FLASK = Sdist("flask", "3.1.3", "0ef0e52b8a9cd932855379197dd8f94047b359ca0a78695144304cb45f87c9eb")
DJANGO = Sdist(
    "django", "5.2.20", "37a2895b4039ad388ffc8fb62603aba497b0c2fe884eb40ead3e8ad7a3ccad57"
)
STARLETTE = Sdist(
    "starlette", "1.10.0", "b8399098d4c1e3522734f7235dc79b1fc967f96cf139c81e0fa30479e0685f9b"
)


def unpacked(sdist: Sdist) -> Path:
    """The directory of ``sdist``'s unpacked source (fetched and checked on first use)."""
    target = CACHE / f"{sdist.name}-{sdist.version}"
    if (target / "tests").is_dir():
        return target
    CACHE.mkdir(exist_ok=True)
    archive = CACHE / sdist.archive
    if not archive.exists():
        subprocess.run(
            [
                sys.executable,
                *("-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"),
                *("--dest", str(CACHE), f"{sdist.name}=={sdist.version}"),
            ],
            check=True,
        )
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != sdist.sha256:
        archive.unlink()
        raise RuntimeError(f"{sdist.archive}: SHA-256 {digest} is not the pinned {sdist.sha256}")
    with tarfile.open(archive) as tar:
        tar.extractall(CACHE, filter="data")
    return target
