"""grit's row order is deterministic: grit descending, ties and nulls by perturbation."""

from __future__ import annotations

import polars as pl

from cellframe.evaluate.replicates import grit


def test_grit_rows_in_a_fixed_order() -> None:
    # Gene A: two guides that agree (finite grit). Genes B..E: one guide each
    # (no partner: null grit), plus the controls (no group: null grit). The
    # null rows used to come back in group_by's arbitrary order.
    singles = ["e1", "c1", "b1", "d1"]
    perts = ["DMSO"] * 4 + ["a1", "a1", "a2", "a2"] + [p for p in singles for _ in range(2)]
    genes = [None] * 4 + ["A"] * 4 + [p[0].upper() for p in singles for _ in range(2)]
    n = len(perts)
    wells = pl.DataFrame(
        {
            "Metadata_Treatment": perts,
            "Metadata_Gene": genes,
            "f1": [0.1, -0.1, 0.0, 0.2, 1.0, 1.1, 0.9, 1.0] + [(-1.0) ** i * 0.5 for i in range(8)],
            "f2": [0.0, 0.1, -0.1, 0.0, 1.0, 0.9, 1.1, 1.0] + [0.1 * i for i in range(8)],
            "f3": [0.1, 0.0, 0.1, -0.1, 0.0, 0.1, 0.0, 0.1] + [1.0 - 0.1 * i for i in range(8)],
        }
    )
    assert wells.height == n
    expected_order = ["a2", "a1", "DMSO", "b1", "c1", "d1", "e1"]
    for _ in range(20):
        result = grit(
            wells,
            profile_col="Metadata_Treatment",
            group_col="Metadata_Gene",
            control_perts=["DMSO"],
        )
        assert result["perturbation"].to_list() == expected_order
        assert result["grit"].null_count() == 5
        assert result["grit"][0] >= result["grit"][1]
