"""The batch-correction panel against scikit-learn, hand-computed cases and real plates.

Tolerances: metrics that are a formula over scikit-learn's output are checked to
1e-12; hand-built exact cases (lattices, separated clusters) to 1e-12; random
mixing cases by a stated bound (LISI and kBET of random data are random).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import (
    adjusted_rand_score,
    normalized_mutual_info_score,
    silhouette_samples,
    silhouette_score,
)

from cellframe.columns import feature_columns
from cellframe.errors import InvalidInputError, MissingColumnsError, SkippedLabelsWarning
from cellframe.evaluate import (
    PairRules,
    average_precision,
    batch_panel,
    clisi,
    compare,
    graph_connectivity,
    ilisi,
    kbet,
    leiden_clusters,
    leiden_nmi_ari,
    lisi,
    map_control,
    map_nonrep,
    phenotypic_activity,
    silhouette_batch,
    silhouette_label,
)
from cellframe.evaluate.batch import BATCH_METRICS, BIO_METRICS, LEIDEN_RESOLUTIONS, _simpson

LINCS = Path(__file__).resolve().parents[2] / "cellframe/data/demo/lincs"


def blobs(n_labels: int = 4, per: int = 30, d: int = 5, spread: float = 50.0, seed: int = 0):
    """Well-separated Gaussian blobs: ``(x, labels)``."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_labels, d)) * spread
    labels = np.repeat(np.arange(n_labels), per)
    return centers[labels] + rng.normal(size=(len(labels), d)), labels


def test_knn_matches_sklearn():
    from sklearn.neighbors import NearestNeighbors

    from cellframe.evaluate.batch import _knn, _Neighbours

    x = np.random.default_rng(9).normal(size=(300, 7)) * 10
    dist, idx = _knn(x, 12)
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=12).fit(x).kneighbors()
    assert np.array_equal(idx, ref_idx)
    assert dist == pytest.approx(ref_dist, abs=1e-9)
    nn = _Neighbours(x)
    assert nn.get(90)[1].shape == (300, 90)
    d12, i12 = nn.get(12)  # the first 12 columns of the larger search
    assert np.array_equal(i12, ref_idx) and d12 == pytest.approx(ref_dist, abs=1e-9)


# ----------------------------------------------------------------- silhouettes


def test_silhouette_label_is_rescaled_sklearn_asw():
    x, labels = blobs(spread=2.0)
    expected = (silhouette_score(x, labels) + 1) / 2
    assert silhouette_label(x, labels) == pytest.approx(expected, abs=1e-12)
    # a frame contributes its feature columns
    frame = pl.DataFrame(x, schema=[f"f{i}" for i in range(5)])
    assert silhouette_label(frame, pl.Series(labels)) == pytest.approx(expected, abs=1e-12)


def test_silhouette_batch_hand_computed_and_skips_counted():
    # label A: batch 1 at 0, 1 and batch 2 at 10, 11 (1-D); silhouettes by hand:
    # s(0) = 1 - 1/10.5, s(1) = 1 - 1/9.5, symmetric for batch 2; score = mean(1 - |s|).
    x = np.array([[0.0], [1.0], [10.0], [11.0], [5.0], [6.0], [3.0], [4.0]])
    batch = ["b1", "b1", "b2", "b2", "b1", "b1", "b1", "b2"]
    labels = ["A", "A", "A", "A", "B", "B", "C", "C"]  # B: one batch; C: one row per batch
    with pytest.warns(SkippedLabelsWarning, match="2 of 3 labels skipped"):
        value = silhouette_batch(x, batch, labels)
    assert value == pytest.approx((1 / 10.5 + 1 / 9.5) / 2, abs=1e-12)


def test_silhouette_batch_matches_sklearn_per_label_loop():
    rng = np.random.default_rng(1)
    x, labels = blobs(n_labels=3, per=40, spread=3.0, seed=1)
    batch = rng.integers(0, 3, size=len(labels))
    expected = np.mean(
        [
            np.mean(1 - np.abs(silhouette_samples(x[labels == g], batch[labels == g])))
            for g in range(3)
        ]
    )
    assert silhouette_batch(x, batch, labels) == pytest.approx(expected, abs=1e-12)


def test_silhouette_batch_refuses_when_no_label_qualifies():
    x = np.arange(8.0).reshape(4, 2)
    with pytest.raises(InvalidInputError, match="no label has rows in at least 2 batches"):
        silhouette_batch(x, ["p1", "p2", "p1", "p2"], ["a", "a", "b", "b"])


# ----------------------------------------------------------------- LISI


def test_simpson_of_balanced_neighbourhood_is_one_half():
    # symmetric weights over two labels: Simpson 0.5, LISI exactly 2 (perfect 2-batch mixing)
    dist = np.array([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    codes = np.array([[0, 1, 0, 1], [1, 1, 0, 0]])
    assert _simpson(dist, codes, 2, perplexity=1.5) == pytest.approx([0.5, 0.5], abs=1e-12)
    # one label in the neighbourhood: Simpson 1, LISI 1
    assert _simpson(dist, np.zeros_like(codes), 2, perplexity=1.5) == pytest.approx([1, 1])


def test_lisi_two_batch_toy_with_perfect_mixing_has_the_known_value():
    # 100 equidistant points (the unit vectors), batches alternating: every row's
    # neighbours are the 99 others at one distance, so the weights are uniform and a
    # row sees 49 of its own batch and 50 of the other. Simpson = (49^2 + 50^2) / 99^2;
    # LISI = 99^2 / 4901 = 1.99980 (-> 2, the number of batches, as n grows).
    x = np.eye(100)
    batch = np.arange(100) % 2
    expected = 99**2 / (49**2 + 50**2)
    assert lisi(x, batch, perplexity=40) == pytest.approx(np.full(100, expected), abs=1e-12)
    assert ilisi(x, batch, perplexity=40) == pytest.approx(expected - 1, abs=1e-12)


def test_lisi_separated_batches_scale_to_zero_and_random_mixing_near_one():
    x, labels = blobs(n_labels=2, per=120, seed=2)
    values = lisi(x, labels)
    assert np.allclose(values, 1.0, atol=1e-12)
    assert ilisi(x, labels) == pytest.approx(0.0, abs=1e-12)
    assert clisi(x, labels) == pytest.approx(1.0, abs=1e-12)
    # batches drawn at random within each blob: neighbourhoods hold both batches about
    # evenly; with perplexity 30 the median LISI is ~1.9 (bound: scaled iLISI > 0.8)
    rng = np.random.default_rng(3)
    batch = rng.integers(0, 2, size=len(labels))
    assert 0.8 < ilisi(x, batch) <= 1.0
    assert ilisi(x, batch) > ilisi(x, labels) + 0.8


def test_lisi_needs_two_values():
    x, _ = blobs()
    with pytest.raises(InvalidInputError, match="at least 2 batches"):
        ilisi(x, np.zeros(len(x)))


# ----------------------------------------------------------------- kBET


def test_kbet_alternating_lattice_accepts_and_separated_rejects():
    # 1-D lattice with alternating batches: every 10-neighbourhood holds 4-6 of each
    # batch (chi-square <= 0.4, p >= 0.5), so every test accepts
    x = np.arange(60, dtype=float)[:, None]
    batch = np.arange(60) % 2
    assert kbet(x, batch, k=10) == 1.0
    # same points, first half one batch: neighbourhoods are one batch (chi-square 10) -> all reject
    # (except at the boundary, where rows 25..34 see both: p >= alpha there)
    halves = (np.arange(60) >= 30).astype(int)
    x_far = np.concatenate([np.arange(30.0), np.arange(30.0) + 1000])[:, None]
    assert kbet(x_far, halves, k=10) == 0.0


def test_kbet_per_label_mean_and_skips():
    x, labels = blobs(n_labels=2, per=40, seed=4)
    x[60:] += 30.0  # label 1's second half moves away: within label 1, batches separate
    batch = np.where(labels == 0, np.tile([0, 1], 40), (np.arange(80) >= 60).astype(int))
    mixed = kbet(x[labels == 0], batch[labels == 0])
    separated = kbet(x[labels == 1], batch[labels == 1])
    assert mixed >= 0.85  # random batches: rejections at about the alpha rate
    assert separated == 0.0
    assert kbet(x, batch, labels) == pytest.approx((mixed + separated) / 2, abs=1e-12)
    tiny = np.r_[labels, [7, 7]]
    with pytest.warns(SkippedLabelsWarning, match="1 of 3 labels skipped"):
        kbet(np.r_[x, [[0.0] * 5, [1.0] * 5]], np.r_[batch, [0, 1]], tiny)
    with pytest.raises(InvalidInputError, match="no label has at least 10 rows"):
        kbet(x[:8], batch[:8], labels[:8])


def test_kbet_p_values_match_scipy_chisquare():
    from scipy.stats import chisquare
    from sklearn.neighbors import NearestNeighbors

    from cellframe.evaluate.batch import _kbet_p_values

    rng = np.random.default_rng(8)
    x = rng.normal(size=(90, 3))
    batch = np.repeat([0, 1, 2], 30)
    x[batch == 2] += 1.5  # a partial batch effect: a spread of p-values
    k = 12
    idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)[1][:, 1:]
    expected = [
        chisquare(np.bincount(batch[row], minlength=3), np.full(3, k / 3)).pvalue for row in idx
    ]
    p = _kbet_p_values(x, batch, k)
    assert p == pytest.approx(expected, abs=1e-12)
    assert kbet(x, batch, k=k, alpha=0.05) == pytest.approx(np.mean(np.array(expected) >= 0.05))


# ----------------------------------------------------------------- graphs


def test_graph_connectivity_hand_built():
    # label "a": one tight clump; label "b": two clumps of 10 far apart
    rng = np.random.default_rng(5)
    a = rng.normal(size=(10, 2))
    b1 = rng.normal(size=(10, 2)) + 1000
    b2 = rng.normal(size=(10, 2)) - 1000
    x = np.r_[a, b1, b2]
    labels = ["a"] * 10 + ["b"] * 20
    assert graph_connectivity(x, labels, n_neighbors=5) == pytest.approx((1.0 + 0.5) / 2)
    assert graph_connectivity(x, ["a"] * 10 + ["b"] * 10 + ["c"] * 10, n_neighbors=5) == 1.0


def test_leiden_recovers_separated_labels_and_matches_sklearn():
    x, labels = blobs(n_labels=4, per=30, spread=30.0, seed=6)
    nmi, ari = leiden_nmi_ari(x, labels)
    assert nmi == pytest.approx(1.0, abs=1e-12)
    assert ari == pytest.approx(1.0, abs=1e-12)
    # overlapping labels: the reported pair is the best-NMI resolution's, per scikit-learn
    x, labels = blobs(n_labels=4, per=30, spread=1.0, seed=7)
    nmi, ari = leiden_nmi_ari(x, labels, seed=3)
    scores = []
    for r in LEIDEN_RESOLUTIONS:
        c = leiden_clusters(x, resolution=r, seed=3)
        scores.append((normalized_mutual_info_score(labels, c), adjusted_rand_score(labels, c)))
    best = max(scores, key=lambda s: s[0])
    assert (nmi, ari) == pytest.approx(best, abs=1e-12)
    assert nmi < 0.9  # overlapping blobs are not recovered
    # seeded: the same partition twice
    assert np.array_equal(leiden_clusters(x, seed=3), leiden_clusters(x, seed=3))


# ----------------------------------------------------------------- mAP


def small_screen(n_plates: int = 2, reps: int = 3, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(5, 8)) * 3
    rows = [(p, t, r) for p in range(n_plates) for t in range(5) for r in range(reps)]
    x = np.array([centers[t] + rng.normal(size=8) for _, t, _ in rows])
    return pl.DataFrame(
        {
            "Metadata_Plate": [f"P{p}" for p, _, _ in rows],
            "Metadata_Treatment": ["DMSO" if t == 0 else f"t{t}" for _, t, _ in rows],
            "Metadata_Control": ["negcon" if t == 0 else None for _, t, _ in rows],
        }
    ).hstack(pl.DataFrame(x.astype(np.float32), schema=[f"f{i}" for i in range(8)]))


def test_map_metrics_are_label_means_of_the_evaluate_functions():
    df = small_screen()
    ap = phenotypic_activity(df, treatment="Metadata_Treatment")
    expected = (
        ap.filter(~pl.col("is_control"))
        .group_by("Metadata_Treatment")
        .agg(pl.col("average_precision").mean())["average_precision"]
        .mean()
    )
    assert map_control(df, label="Metadata_Treatment") == pytest.approx(expected, abs=1e-12)
    treated = df.filter(pl.col("Metadata_Control").is_null())
    ap = average_precision(
        treated,
        rules=PairRules(pos_sameby=["Metadata_Treatment"], neg_diffby=["Metadata_Treatment"]),
    )
    expected = ap.group_by("Metadata_Treatment").agg(pl.col("average_precision").mean())
    value = map_nonrep(df, label="Metadata_Treatment")
    assert value == pytest.approx(expected["average_precision"].mean(), abs=1e-12)
    assert value == pytest.approx(1.0)  # well-separated treatments: every replicate first


def test_map_control_needs_controls():
    df = small_screen().drop("Metadata_Control")
    with pytest.raises(InvalidInputError, match="pass controls="):
        map_control(df, label="Metadata_Treatment")
    with pytest.raises(InvalidInputError, match=r"controls expression cannot be evaluated.*Kind"):
        map_control(df, label="Metadata_Treatment", controls=pl.col("Metadata_Kind") == "x")
    with pytest.raises(InvalidInputError, match="no row matched"):
        map_control(df, label="Metadata_Treatment", controls=pl.col("Metadata_Treatment") == "x")


# ----------------------------------------------------------------- panel


def test_batch_panel_row_and_overall_formula():
    df = small_screen(reps=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedLabelsWarning)
        row = batch_panel(df, batch="Metadata_Plate", label="Metadata_Treatment")
    assert row.height == 1
    assert row.columns[:3] == ["n_profiles", "n_batches", "n_labels"]
    assert row.row(0)[:3] == (60, 2, 5)
    vals = row.row(0, named=True)
    batch = np.mean([vals[m] for m in BATCH_METRICS])
    bio = np.mean([vals[m] for m in BIO_METRICS])
    assert vals["batch_score"] == pytest.approx(batch, abs=1e-12)
    assert vals["bio_score"] == pytest.approx(bio, abs=1e-12)
    assert vals["overall_score"] == pytest.approx(0.4 * batch + 0.6 * bio, abs=1e-12)
    assert vals["silhouette_label"] == pytest.approx(
        (silhouette_score(df.select(feature_columns(df)).to_numpy(), df["Metadata_Treatment"]) + 1)
        / 2,
        abs=1e-6,  # float32 features
    )
    # no batch effect in this screen and separated treatments: both halves high
    assert vals["batch_score"] > 0.7 and vals["bio_score"] > 0.8


def test_compare_names_the_table_in_its_warnings():
    df = small_screen(reps=6)
    extra = df.filter(pl.col("Metadata_Treatment") == "t1").head(2)  # 2 rows, plate P0 only
    df = pl.concat([df, extra.with_columns(pl.lit("rare").alias("Metadata_Treatment"))])
    with pytest.warns(SkippedLabelsWarning) as record:
        compare({"raw": df}, batch="Metadata_Plate", label="Metadata_Treatment")
    messages = sorted(str(w.message) for w in record if w.category is SkippedLabelsWarning)
    assert messages == [
        "table 'raw': kbet: 1 of 6 labels skipped (under 10 rows or one batch)",
        "table 'raw': silhouette_batch: 1 of 6 labels skipped (a single batch, or one row per "
        "batch)",
    ]


def test_numeric_batch_column_is_not_a_feature():
    df = small_screen(reps=6)
    numeric = df.with_columns(pl.col("Metadata_Plate").str.slice(1).cast(pl.Int64).alias("plate"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedLabelsWarning)
        a = batch_panel(df, batch="Metadata_Plate", label="Metadata_Treatment")
        b = batch_panel(numeric, batch="plate", label="Metadata_Treatment")
    assert a.row(0) == pytest.approx(b.row(0), abs=1e-12)


def test_batch_panel_refusals():
    df = small_screen(reps=6)
    with pytest.raises(InvalidInputError, match="single value"):
        batch_panel(df.with_columns(pl.lit("P").alias("Metadata_Plate")), batch="Metadata_Plate",
                    label="Metadata_Treatment")  # fmt: skip
    nulls = df.with_columns(
        pl.when(pl.int_range(pl.len()) < 2).then(None).otherwise(pl.col("Metadata_Treatment"))
        .alias("Metadata_Treatment")
    )  # fmt: skip
    with pytest.raises(InvalidInputError, match="null in 2 of 60 rows"):
        batch_panel(nulls, batch="Metadata_Plate", label="Metadata_Treatment")
    nan = df.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(float("nan"))
                          .otherwise(pl.col("f1")).alias("f1"))  # fmt: skip
    with pytest.raises(InvalidInputError, match="1 NaN/infinite"):
        batch_panel(nan, batch="Metadata_Plate", label="Metadata_Treatment")
    with pytest.raises(MissingColumnsError, match="Metadata_Source"):
        batch_panel(df, batch="Metadata_Source", label="Metadata_Treatment")


def test_compare_rows_and_names():
    df = small_screen(reps=6)
    shifted = df.with_columns(
        pl.when(pl.col("Metadata_Plate") == "P1").then(pl.col("^f.*$") + 20.0)
        .otherwise(pl.col("^f.*$"))
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedLabelsWarning)
        table = compare(
            {"cp/none": shifted, ("cp", "center"): df, "raw": df},
            batch="Metadata_Plate",
            label="Metadata_Treatment",
        )
    assert table["method"].to_list() == ["cp/none", "cp/center", "raw"]
    assert table["feature_source"].to_list() == ["cp", "cp", None]
    assert table["correction"].to_list() == ["none", "center", "raw"]
    # the plate shift lowers the batch score; the unshifted copies score alike
    b = table["batch_score"].to_list()
    assert b[0] < b[1] - 0.3 and b[1] == pytest.approx(b[2], abs=1e-12)
    with pytest.raises(MissingColumnsError, match="table 'nolabel' lacks"):
        compare({"nolabel": df.drop("Metadata_Treatment")}, batch="Metadata_Plate",
                label="Metadata_Treatment")  # fmt: skip
    with pytest.raises(InvalidInputError, match="table 'bad'"):
        compare({"bad": df.with_columns(pl.lit("P").alias("Metadata_Plate"))},
                batch="Metadata_Plate", label="Metadata_Treatment")  # fmt: skip


# ----------------------------------------------------------------- real plates


def add_plate_effect(df: pl.DataFrame, batch: str, size: float, seed: int = 0) -> pl.DataFrame:
    """Add to every feature a per-batch offset of ``size`` x the feature's SD x N(0, 1)."""
    feats = feature_columns(df)
    rng = np.random.default_rng(seed)
    sd = df.select(pl.col(feats).std()).to_numpy().ravel()
    offsets = {b: rng.normal(size=len(feats)) * sd * size for b in df[batch].unique().sort()}
    x = df.select(feats).to_numpy() + np.stack([offsets[b] for b in df[batch]])
    return df.with_columns(pl.DataFrame(x, schema=feats))


def center_per_batch(df: pl.DataFrame, batch: str) -> pl.DataFrame:
    feats = feature_columns(df)
    return df.with_columns(pl.col(feats) - pl.col(feats).mean().over(batch))


def sphere_per_batch(df: pl.DataFrame, batch: str, controls: pl.Expr) -> pl.DataFrame:
    from cellframe.profiles.sphere import Spherizer

    parts = [
        Spherizer(lam=1e-1, controls=controls).fit(g).transform(g).collect()
        for _, g in df.group_by(batch, maintain_order=True)
    ]
    return pl.concat(parts)


def check_effect_and_corrections(df: pl.DataFrame, batch: str, label: str, controls: pl.Expr):
    effect = add_plate_effect(df, batch, size=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedLabelsWarning)
        table = compare(
            {
                "none": df,
                "effect": effect,
                "effect/center": center_per_batch(effect, batch),
                "effect/sphere": sphere_per_batch(effect, batch, controls),
            },
            batch=batch,
            label=label,
            controls=controls,
        )
    s = {r["method"]: r for r in table.iter_rows(named=True)}
    # the effect (1 SD per feature) must lower the batch score a lot, and mixing metrics collapse
    assert s["effect"]["batch_score"] < s["none"]["batch_score"] - 0.3
    assert s["effect"]["ilisi"] < 0.05
    for fix in ("effect/center", "effect/sphere"):
        assert s[fix]["batch_score"] > s["effect"]["batch_score"] + 0.25, fix
        # biology must not collapse: within 0.05 of the uncorrected data's, above the effect's
        assert s[fix]["bio_score"] > s["none"]["bio_score"] - 0.05, fix
        assert s[fix]["bio_score"] > s["effect"]["bio_score"], fix
    # centring removes exactly the added offsets (the raw plates are near-centred already)
    assert s["effect/center"]["batch_score"] == pytest.approx(s["none"]["batch_score"], abs=0.05)
    return table


def test_nelisa_plate_effect_and_corrections(shared_data):
    path = shared_data / "profiles-nelisa" / "nelisa_profiles.parquet"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    df = pl.read_parquet(path).with_columns(pl.col("Metadata_broad_sample").fill_null("DMSO"))
    # subsample for speed: DMSO and 100 compounds (4 plates, 1 replicate per plate each)
    keep = [s for s in df["Metadata_broad_sample"].unique().sort() if s != "DMSO"][:100]
    df = df.filter(pl.col("Metadata_broad_sample").is_in([*keep, "DMSO"]))
    controls = pl.col("Metadata_control_type") == "negcon"
    table = check_effect_and_corrections(df, "Metadata_Plate", "Metadata_broad_sample", controls)
    assert table["n_batches"].to_list() == [4] * 4


def test_lincs_plate_effect_and_corrections():
    df = pl.read_csv(
        LINCS / "SQ00015054_normalized_feature_select.csv.gz", infer_schema_length=10000
    )
    # one plate: two pseudo-batches by well column parity (each treatment in both)
    column = df["Metadata_Well"].str.slice(1).cast(pl.Int32)
    df = df.with_columns(
        pl.when(column % 2 == 0).then(pl.lit("even")).otherwise(pl.lit("odd")).alias("Batch")
    ).rename({"Batch": "Metadata_Batch"})
    controls = pl.col("Metadata_broad_sample") == "DMSO"
    table = check_effect_and_corrections(df, "Metadata_Batch", "Metadata_broad_sample", controls)
    assert table["n_profiles"].to_list() == [384] * 4
