"""Shared fixtures: the real-data root (``COMPUTEALLOC_DATA``, default ``../shared/data``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_root() -> Path:
    """The folder of real public sources, as CI and the README set it."""
    return Path(os.environ.get("COMPUTEALLOC_DATA", str(_DEFAULT)))


needs_data = pytest.mark.skipif(
    not data_root().is_dir(),
    reason=f"real data folder {data_root()} is absent (set COMPUTEALLOC_DATA to ../shared/data)",
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"real data folder {root} is absent (set COMPUTEALLOC_DATA)")
    return root
