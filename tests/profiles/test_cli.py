"""The profiling commands chain without --input/--output: ingest -> ... -> evaluate."""

from __future__ import annotations

from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from cellframe.cli import main
from cellframe.profiles import aggregate, feature_select, normalize, sphere
from cellframe.store import Store

from .conftest import make_screen

CHAIN_TABLES = [
    "cells",
    "wells",
    "wells_normalized",
    "wells_normalized_selected",
    "wells_normalized_selected_sphered",
]


def test_whole_chain_runs_on_default_table_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cells = make_screen(n_plates=2, n_wells=24, n_sites=2, cells_per_site=5, n_features=6)
    source = tmp_path / "cells.parquet"
    cells.write_parquet(source)
    store = ["--store", str(tmp_path / "s.duckdb"), "--quiet"]
    assert main(["ingest", str(source), *store]) == 0
    for command in (["aggregate"], ["normalize"], ["select"], ["sphere", "--lam", "0.1"]):
        assert main([*command, *store]) == 0, command
    assert main(["evaluate", "--mode", "activity", "--null-size", "2000", *store[:2]]) == 0
    out = capsys.readouterr().out

    # Each table equals the pure chain on the same rows (the reference).
    wells = aggregate(cells.lazy(), "well").collect()
    normalized = normalize(wells, "standardize").collect()
    selected = feature_select(normalized, "variance_threshold").apply(normalized).collect()
    sphered = sphere(selected, lam=0.1).collect()
    key = ["Metadata_Plate", "Metadata_Well"]
    with Store(tmp_path / "s.duckdb", read_only=True) as s:
        names = set(s.table_names())
        assert set(CHAIN_TABLES) <= names
        assert s.read("cells").height == cells.height == 480
        for table, expected in zip(
            CHAIN_TABLES[1:], (wells, normalized, selected, sphered), strict=True
        ):
            got = s.read(table).select(expected.columns).sort(key)
            assert_frame_equal(
                got, expected.sort(key), check_dtypes=False, rel_tol=1e-4, abs_tol=1e-4
            )
        assert s.provenance("wells_normalized_selected_sphered")["step"][-1] == "sphere"
        summary = s.read("wells_normalized_selected_sphered_activity_summary")
    # 4 treatments t0..t3 (the dmso controls are the null): p- and q-values reported and printed.
    assert sorted(summary["Metadata_Treatment"]) == ["t0", "t1", "t2", "t3"]
    p, q = summary["p_value"], summary["corrected_p_value"]
    assert ((p > 0) & (p <= 1)).all() and (q >= p).all() and (q <= 1).all()
    assert "p_value" in out and "q_value" in out
    for treatment, pv in zip(summary["Metadata_Treatment"], p, strict=True):
        line = next(x for x in out.splitlines() if x.split() and x.split()[0] == treatment)
        assert f"{pv:.4g}" in line
