"""Finding, opening and decoding a sample log file.

The format comes from the suffix (or ``format=``); CSV and JSONL may be gzip-compressed
(told by the gzip magic bytes, not the name); text is UTF-8 with an optional leading BOM.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import cast

from computealloc.data.samples.errors import SampleLogError
from computealloc.data.samples.schema import Format

_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


_GZIP_MAGIC = b"\x1f\x8b"


def check_file(path: Path) -> None:
    """A missing file, a directory or an unreadable file, said plainly (no OSError)."""
    if path.is_dir():
        raise SampleLogError(
            "is a directory; expected a sample log file (CSV, JSONL or Parquet)", path=str(path)
        )
    if not path.exists():
        raise SampleLogError("no such file; expected a sample log file", path=str(path))
    if not os.access(path, os.R_OK):
        raise SampleLogError("permission denied; expected a readable file", path=str(path))


def format_of(path: Path, format: str | None) -> Format:
    """The file format: ``format`` when given (checked), else from the suffix (``.gz`` aside).

    Raises
    ------
    ValueError
        For a ``format`` that is not ``"csv"``, ``"jsonl"``, ``"parquet"`` or None.
    SampleLogError
        When the suffix names no known format.
    """
    if format is not None:
        if format not in ("csv", "jsonl", "parquet"):
            raise ValueError(
                "The 'format' parameter of read_samples must be one of 'csv', 'jsonl', "
                f"'parquet' or None. Got {format!r} instead."
            )
        return cast(Format, format)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _SUFFIXES.get(suffixes[-1] if suffixes else "")
    if fmt is None or (fmt == "parquet" and path.name.lower().endswith(".gz")):
        raise SampleLogError(
            "cannot tell the format from the file name; expected a name ending in .csv, "
            ".jsonl, .ndjson, .parquet or .pq (.csv.gz, .jsonl.gz compressed) or format=, "
            f"found {path.name!r}",
            path=str(path),
        )
    return fmt


def read_bytes(path: Path) -> tuple[bytes, str]:
    """The file's bytes (gunzipped when they start with the gzip magic) and a name for offsets."""
    data = path.read_bytes()
    if not data:
        raise SampleLogError(
            "empty file (0 bytes); expected at least one sample record", path=str(path)
        )
    if not data.startswith(_GZIP_MAGIC):
        return data, "the file"
    try:
        text = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise SampleLogError(
            f"not a readable gzip file ({exc}); expected a complete gzip stream", path=str(path)
        ) from exc
    if not text:
        raise SampleLogError(
            "empty file (0 bytes after gzip decompression); expected at least one sample record",
            path=str(path),
        )
    return text, "the decompressed file"


def decode_utf8(data: bytes, path: str, what: str = "the file") -> str:
    """Decode UTF-8 text, dropping a leading BOM; an invalid byte names its line.

    Parameters
    ----------
    data : bytes
        The file's contents.
    path : str
        The file, for the message.
    what : str
        What the byte offsets count in ("the file", "the decompressed file").

    Raises
    ------
    SampleLogError
        Naming the file, the line, the byte offset and the expected encoding (UTF-8).
    """
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        pos = exc.start
        line_start = data.rfind(b"\n", 0, pos) + 1
        raise SampleLogError(
            f"invalid UTF-8 byte 0x{data[pos]:02x} at byte offset {pos} of {what} "
            f"(byte {pos - line_start} of the line); expected UTF-8 text",
            path=path,
            line=data.count(b"\n", 0, pos) + 1,
        ) from exc
