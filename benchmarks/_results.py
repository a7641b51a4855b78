"""Write one benchmark's section into ``benchmarks/results.md`` (atomic, other sections kept)."""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path

from computealloc.files import atomic_write

RESULTS = Path(__file__).with_name("results.md")
HEADER = "# Benchmark results\n\nEach section is rewritten by the script named in its heading.\n"


def machine() -> str:
    """One line describing where the numbers were measured."""
    import os

    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}"
    )


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of results.md with ``body``."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n## {name}\n\n_{machine()}_\n\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    atomic_write(RESULTS, lambda fh: fh.write(text))
