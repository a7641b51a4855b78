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


@pytest.fixture(scope="session")
def llama_jinja(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """URL of a real llama-server with a chat template that leaves a final assistant message
    open (``gemma_prefill.jinja``: prefill, so a partial thought is continued); skips with the
    reason when the binary or its model is absent."""
    import llama_server

    reason = llama_server.missing()
    if reason:
        pytest.skip(reason)
    log = tmp_path_factory.mktemp("llama-jinja") / "log"
    template = Path(__file__).with_name("gemma_prefill.jinja")
    server = llama_server.LlamaServer(llama_server.model_file(), log, template=template)
    try:
        yield server.url
    finally:
        server.kill()
