"""Where the 3D viewer's JavaScript comes from when no network may be used.

3Dmol.js is installed once from the npm registry by ``scripts/fetch_3dmol.sh`` (the setup runs
it) into ``app/static/3Dmol-min.js``, which the app serves itself; notebooks and exported HTML
embed the same file. Nothing ever loads it from a CDN.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = ["threedmol_js_path", "threedmol_js"]

_REPO_COPY = Path(__file__).resolve().parents[2] / "app" / "static" / "3Dmol-min.js"


def threedmol_js_path() -> Path:
    """The local 3Dmol.js: ``$CDVAE_3DMOL_JS`` if set, else the checkout's ``app/static`` copy.

    Raises:
        FileNotFoundError: saying how to install it (``bash scripts/fetch_3dmol.sh``).
    """
    env = os.environ.get("CDVAE_3DMOL_JS")
    path = Path(env) if env else _REPO_COPY
    if not path.is_file():
        raise FileNotFoundError(
            f"3Dmol.js not found at {path}: run `bash scripts/fetch_3dmol.sh` (the setup does) "
            "or set CDVAE_3DMOL_JS to a local copy of 3Dmol-min.js"
        )
    return path


@functools.lru_cache(maxsize=2)
def _read(path: str, mtime: float) -> str:
    return Path(path).read_text(encoding="utf-8")


def threedmol_js() -> str:
    """The source of the local 3Dmol.js (read once per file version)."""
    path = threedmol_js_path()
    return _read(str(path), path.stat().st_mtime)
