"""Writing files safely: every output goes through a temporary sibling and an atomic rename.

Lives outside the stage packages because every stage writes files (sample logs, tables,
policies, reports, the serving spend snapshots).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike[str], write: Any, *, mode: str = "w") -> None:
    """Write a file through a temporary sibling and an atomic rename.

    ``write`` is called with an open file object (or, for ``mode="path"``, with the temporary
    path). A crash before the rename leaves the destination untouched and no partial file.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make outputs unreadable to others
    try:
        if mode == "path":
            os.close(fd)
            write(tmp)
        else:
            with os.fdopen(fd, mode) as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
