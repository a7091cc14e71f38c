"""Paths and small builders shared by the tests (crystals themselves live in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CDVAE_DATA_DIR", REPO.parent / "shared" / "data"))


def data_file(dataset: str, split: str) -> Path:
    """Path of a shared benchmark file; the test is skipped (with the reason) if it is absent."""
    path = DATA_DIR / dataset / f"{split}.csv"
    if not path.is_file():
        pytest.skip(f"benchmark file {path} not available (set CDVAE_DATA_DIR)")
    return path
