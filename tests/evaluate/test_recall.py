"""recall@k under copairs' pair rules, against copairs' own rank lists and a hand case."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellframe.errors import InvalidInputError
from cellframe.evaluate import PairRules, average_precision, recall_at_k
from tests.evaluate._synthetic import synthetic_screen

RULES = dict(pos_sameby=["Metadata_Treatment"], neg_diffby=["Metadata_Treatment"])


def _copairs_recall(df: pl.DataFrame, ks: list[int]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """recall@k from copairs 0.5.5's rank lists (copairs has no recall function itself)."""
    ap_mod = pytest.importorskip("copairs.map.average_precision")
    from copairs import compute
    from copairs.matching import find_pairs

    pdf = df.to_pandas()
    feats = pdf[[c for c in pdf.columns if not c.startswith("Metadata_")]].values
    meta = pdf[[c for c in pdf.columns if c.startswith("Metadata_")]]
    pos = find_pairs(meta, sameby=RULES["pos_sameby"], diffby=[])
    neg = find_pairs(meta, sameby=[], diffby=RULES["neg_diffby"])
    sim = compute.get_similarity_fn("cosine", progress_bar=False)
    paired, rel, counts = ap_mod.build_rank_lists(
        pos, neg, sim(feats, pos, 20000), sim(feats, neg, 20000)
    )
    counts = counts.astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    out = {}
    for k in ks:
        hits = [
            rel[s : s + min(k, c)].sum() / rel[s : s + c].sum()
            for s, c in zip(starts, counts, strict=True)
        ]
        out[k] = np.asarray(hits)
    return paired, out


def test_recall_matches_copairs_rank_lists():
    df = synthetic_screen(n_treatments=15, replicates=4, signal=0.6, seed=11).filter(
        pl.col("Metadata_Control") != "negcon"
    )
    ks = [1, 3, 5, 20, 1000]
    paired, ref = _copairs_recall(df, ks)
    got = recall_at_k(df, k=ks, rules=PairRules(**RULES))
    assert got["row"].to_list() == paired.tolist()
    for k in ks:
        np.testing.assert_allclose(got[f"recall_at_{k}"].to_numpy(), ref[k], atol=1e-12)
    # Not trivially 0 or 1: the synthetic signal is moderate.
    assert 0 < got["recall_at_3"].mean() < 1
    assert got["recall_at_1000"].to_list() == [1.0] * got.height
    # The AP columns are those of average_precision.
    ap = average_precision(df, rules=PairRules(**RULES))
    assert got.drop([f"recall_at_{k}" for k in ks]).equals(ap)


def test_recall_hand_case():
    # Query 0 at (1, 0) ranks 2 (cos 0.99), 4 (0.71), 3 (0.11), then 1 (0.0, its replicate).
    df = pl.DataFrame(
        {"Metadata_Treatment": ["a", "a", "b", "b", "c"],
         "f1": [1.0, 0.0, 0.9, 0.1, 0.5], "f2": [0.0, 1.0, 0.1, 0.9, 0.5]}
    )  # fmt: skip
    with pytest.warns(RuntimeWarning, match="1 of 5 queries have no positive"):
        got = recall_at_k(df, k=[3, 4], rules=PairRules(**RULES))
    assert got.row(0, named=True)["recall_at_3"] == 0.0
    assert got.row(0, named=True)["recall_at_4"] == 1.0
    # Query 2 at (0.9, 0.1) finds its replicate (0.1, 0.9, cos 0.22) after 0 (0.99) and 4 (0.78).
    assert got["recall_at_3"][2] == 1.0
    # The singleton c has no positive: null recall, as its AP.
    assert got["recall_at_3"][4] is None
    assert got["average_precision"][4] is None


def test_bad_k():
    df = synthetic_screen(n_treatments=4)
    for bad in (0, [], [2, -1], 1.5, True):
        with pytest.raises(InvalidInputError, match="k must be a positive integer"):
            recall_at_k(df, k=bad, rules=PairRules(**RULES))
