"""The Parquet reader; its records are reported by 0-based row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from computealloc.data.samples.errors import RecordOrigin, SampleLogError


def read_parquet(path: Path) -> tuple[pd.DataFrame, RecordOrigin]:
    """The table's records, and an origin that reports them by 0-based row.

    A NaN in a float ``tokens`` or ``score`` column is an error here (pandas would read it as
    null); an empty or unreadable file is a :class:`SampleLogError` naming the file.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = str(path)
    if path.stat().st_size == 0:
        raise SampleLogError(
            "empty file (0 bytes); expected at least one sample record", path=source
        )
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise SampleLogError(
            f"not a readable Parquet file ({exc}); expected a Parquet table", path=source
        ) from exc
    origin = RecordOrigin(source)
    for name in ("tokens", "score"):
        if name in table.column_names and pa.types.is_floating(table.schema.field(name).type):
            nan = pc.is_nan(table[name]).fill_null(False).to_numpy(zero_copy_only=False)
            if nan.any():
                raise origin.error(
                    "expected a finite number or null, found nan",
                    row=int(np.argmax(nan)),
                    field=name,
                )
    return table.to_pandas(), origin
