"""Data files fetched once: downloaded into a temporary file beside their place, SHA-256 checked on
the way, and moved into place only when complete, so a cut or tampered download never looks like a
good file; and the same published SHA-256 checked again whenever a file on disk is read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from vae_sweep.errors import DataError

DOWNLOAD_TIMEOUT_S = 60


def fetch_file(url: str, target: Path, expected_sha256: str | None) -> None:
    """Fetch ``url`` into a temporary file next to ``target`` and move it into place only when complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False) as tmp:
        partial = Path(tmp.name)
        try:
            digest = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    tmp.write(chunk)
            if expected_sha256 is not None and (actual := digest.hexdigest()) != expected_sha256:
                raise DataError(
                    f"{url}: SHA-256 mismatch: expected {expected_sha256}, got {actual}; the download was discarded. "
                    "If the mirror serves a re-packed copy of the same images, set data.verify_checksum=false"
                )
        except BaseException:
            tmp.close()
            partial.unlink(missing_ok=True)
            raise
    os.replace(partial, target)


def check_sha256(path: Path, raw: bytes, expected_sha256: str | None) -> None:
    """Raise ``DataError`` unless ``raw``, the bytes read from ``path``, has the published SHA-256
    (None: not checked), saying how to get a good copy or to accept a re-packed one."""
    if expected_sha256 is not None and (actual := hashlib.sha256(raw).hexdigest()) != expected_sha256:
        raise DataError(
            f"{path}: SHA-256 mismatch: expected {expected_sha256}, got {actual}. Delete the file so that it is "
            "downloaded again, or, if it is a re-packed copy of the same images, set data.verify_checksum=false"
        )
