"""The analyst SQL of the evaluation layer (``sql/evaluate.sql``), defined on a store."""

from __future__ import annotations

from cellframe.store import Store, load_sql

__all__ = ["register_evaluate_sql"]


def register_evaluate_sql(store: Store) -> None:
    """Define the evaluation macros in ``store``'s connection.

    After this, SQL can use ``cf_vectors(tbl)``, ``cf_top_k_similar(tbl,
    key_col, key_value, k)``, ``cf_pair_similarity(tbl, key_col, a, b)`` and
    ``cf_moa_summary(tbl, label_col)``. The macros are temporary: nothing is
    written to the database.

    Examples
    --------
    >>> import polars as pl
    >>> store = Store()
    >>> _ = store.write("wells", pl.DataFrame({"Metadata_Well": ["A01", "A02", "A03"],
    ...                 "f1": [1.0, 0.9, 0.0], "f2": [0.0, 0.1, 1.0]}), step="example")
    >>> register_evaluate_sql(store)
    >>> store.sql("FROM cf_top_k_similar('wells', 'Metadata_Well', 'A01', 1)")["Metadata_Well"].to_list()
    ['A02']
    """
    store.connection.execute(load_sql("evaluate"))
