"""Turn every kind of tabular input cellframe accepts into a stream of Arrow tables."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import polars as pl
import pyarrow as pa

from cellframe.errors import InvalidInputError

__all__ = ["WriteInput", "as_arrow_batches"]

WriteInput = (
    pl.DataFrame
    | pl.LazyFrame
    | pa.Table
    | pa.RecordBatch
    | pa.RecordBatchReader
    | Iterable[pl.DataFrame | pa.Table | pa.RecordBatch]
)


def as_arrow_batches(data: WriteInput) -> Iterator[pa.Table]:
    """Yield ``data`` as Arrow tables, batch by batch, without materialising an iterator whole."""
    if isinstance(data, pl.LazyFrame):
        # Streaming engine, yielded in bounded slices: a lazy input is never
        # materialised whole just to be written.
        for frame in data.collect_batches():
            yield frame.to_arrow()
        return
    if isinstance(data, pl.DataFrame):
        yield data.to_arrow()
        return
    if isinstance(data, pa.Table):
        yield data
        return
    if isinstance(data, pa.RecordBatch):
        yield pa.Table.from_batches([data])
        return
    if isinstance(data, pa.RecordBatchReader):
        for batch in data:
            yield pa.Table.from_batches([batch])
        return
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise InvalidInputError(
            f"cannot write a {type(data).__name__}: pass a Polars DataFrame/LazyFrame, "
            "an Arrow Table/RecordBatch/RecordBatchReader, or an iterator of those"
        )
    for item in data:
        if isinstance(item, pl.DataFrame):
            yield item.to_arrow()
        elif isinstance(item, pa.Table):
            yield item
        elif isinstance(item, pa.RecordBatch):
            yield pa.Table.from_batches([item])
        else:
            raise InvalidInputError(
                f"an iterator passed to Store.write yielded a {type(item).__name__}; "
                "it must yield Polars DataFrames or Arrow Tables/RecordBatches"
            )
