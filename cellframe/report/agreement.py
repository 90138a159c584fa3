"""Classical features and deep embeddings of the same cells, side by side.

The thesis comparison: CellProfiler-named measurements
(:func:`cellframe.pipeline.measure.measure_images`) and the embedding of the
same cells (``MeasureOptions(embed=...)``) share the keys
``Metadata_Plate/Well/Site/ObjectNumber``, so each cell has both. How much of
a classical feature does the embedding carry? :func:`feature_agreement`
answers with the cross-validated R^2 of a ridge regression from the embedding
to the feature, beside two references computed on the same folds: the site
alone (how much a model gets from knowing where a cell was imaged; with sites
from different plates, intensities differ by site) and the embedding with the
feature shuffled (what a model gets from nothing).
:func:`classical_vs_deep_section` draws it, with the cells per site and
compartment, the number of features on each side, and crops of a few cells
with their mask outlines.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import altair as alt
import numpy as np
import polars as pl

from cellframe.columns import OBJECT_NUMBER, PLATE, SITE, WELL, feature_columns
from cellframe.errors import InvalidInputError, MissingColumnsError, UnmatchedObjectsWarning
from cellframe.report.charts import finite_rows
from cellframe.report.html import ReportSection
from cellframe.report.images import (
    ReportImage,
    _pick_cells,
    cell_crop_montage,
    png_data_uri,
)

__all__ = [
    "AGREEMENT_FEATURES",
    "PREDICTORS",
    "classical_vs_deep_section",
    "feature_agreement",
    "feature_agreement_chart",
]

CELL_KEYS = (PLATE, WELL, SITE, OBJECT_NUMBER)
COMPARTMENTS = ("Nuclei", "Cells", "Cytoplasm")

#: Classical features predicted from the embedding: size and one intensity per compartment.
AGREEMENT_FEATURES = (
    "Cells_AreaShape_Area",
    "Nuclei_AreaShape_Area",
    "Nuclei_Intensity_MeanIntensity_DNA",
    "Cells_Intensity_MeanIntensity_AGP",
    "Cytoplasm_Intensity_MeanIntensity_Mito",
)

#: The ``predictor`` values of :func:`feature_agreement`, in chart order.
PREDICTORS = {
    "embedding": "embedding (ridge)",
    "site": "site alone",
    "shuffled": "embedding, feature shuffled",
}

#: Ridge penalties searched inside each training fold (RidgeCV's leave-one-out).
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 6, 17))


def _out_of_fold_r2(y: np.ndarray, predicted: np.ndarray) -> float:
    """1 - SSE / SST of out-of-fold predictions pooled over the folds; NaN for a constant y."""
    sst = float(np.sum((y - y.mean()) ** 2))
    if sst == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((y - predicted) ** 2)) / sst


def _ridge_predictions(x: np.ndarray, y: np.ndarray, folds: list) -> np.ndarray:
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = np.empty_like(y)
    for train, test in folds:
        # The scaler and the penalty are fitted on the training cells only.
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
        model.fit(x[train], y[train])
        out[test] = model.predict(x[test])
    return out


def _site_predictions(site: np.ndarray, y: np.ndarray, folds: list) -> np.ndarray:
    """Each held-out cell predicted by the mean of the training cells of its site."""
    out = np.empty_like(y)
    for train, test in folds:
        means = {s: y[train][site[train] == s].mean() for s in np.unique(site[train])}
        fallback = y[train].mean()  # a site with no training cell: the overall mean
        out[test] = [means.get(s, fallback) for s in site[test]]
    return out


def feature_agreement(
    classical: pl.DataFrame,
    embeddings: pl.DataFrame,
    *,
    features: Sequence[str] = AGREEMENT_FEATURES,
    n_folds: int = 5,
    seed: int = 0,
) -> pl.DataFrame:
    """How well the embedding of each cell predicts its classical features, cross-validated.

    For every feature, cells are split into ``n_folds`` folds (shuffled with
    ``seed``; the same folds for every predictor); a ridge regression
    (standardized embedding, penalty chosen by leave-one-out inside the
    training folds) predicts the held-out cells, and R^2 is computed over the
    pooled out-of-fold predictions: ``1 - sum((y - y_hat)^2) / sum((y - mean(y))^2)``
    (0: no better than the mean; negative: worse). Two references on the same
    folds: the training mean of the cell's site ("site alone"), and the ridge
    regression fitted to the feature shuffled across cells ("embedding,
    feature shuffled"; about 0 or below when nothing leaks).

    Parameters
    ----------
    classical : polars.DataFrame
        One row per cell: ``Metadata_Plate/Well/Site/ObjectNumber`` and the
        ``features`` (e.g. the table ``measure_images`` writes).
    embeddings : polars.DataFrame
        One row per cell with the same keys and the embedding columns (every
        numeric non-``Metadata_`` column, e.g. ``cells_efficientnet_lite0``).
    features : sequence of str, default AGREEMENT_FEATURES
        Classical features to predict.
    n_folds : int, default 5
        Cross-validation folds.
    seed : int, default 0
        Seed of the fold split and of the shuffled control.

    Returns
    -------
    polars.DataFrame
        Three rows per feature (``predictor`` in :data:`PREDICTORS` order):
        ``feature``, ``predictor``, ``r2`` (NaN for a feature constant over
        the cells), ``n_cells`` (cells with a finite value of the feature and
        of every embedding column), ``n_folds``.

    Raises
    ------
    MissingColumnsError
        If a key or feature column is absent.
    InvalidInputError
        If a table repeats a cell, ``n_folds`` is below 2, the embedding has
        no feature column, or fewer than ``2 * n_folds`` cells of a feature are
        in both tables with finite values.

    Warns
    -----
    UnmatchedObjectsWarning
        With the number of cells in only one of the two tables (left out).

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> keys = {"Metadata_Plate": ["P"] * 40, "Metadata_Well": ["A01"] * 40,
    ...         "Metadata_Site": [1] * 20 + [2] * 20, "Metadata_ObjectNumber": list(range(40))}
    >>> emb = rng.normal(size=(40, 8))
    >>> classical = pl.DataFrame({**keys, "Cells_AreaShape_Area": 100 + 10 * emb[:, 0]})
    >>> embeddings = pl.DataFrame(keys).with_columns(
    ...     pl.Series(f"e_{i}", emb[:, i]) for i in range(8))
    >>> out = feature_agreement(classical, embeddings, features=["Cells_AreaShape_Area"])
    >>> out.select("predictor", pl.col("r2").round(2)).rows()
    [('embedding (ridge)', 1.0), ('site alone', -0.16), ('embedding, feature shuffled', -0.08)]
    """
    from sklearn.model_selection import KFold

    for name, table, need in (
        ("classical features", classical, [*CELL_KEYS, *features]),
        ("embeddings", embeddings, list(CELL_KEYS)),
    ):
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise MissingColumnsError(f"the table of {name}", missing)
        repeated = table.height - table.select(CELL_KEYS).n_unique()
        if repeated:
            raise InvalidInputError(
                f"feature_agreement: the table of {name} repeats {repeated} cell(s) (the same "
                f"{', '.join(CELL_KEYS)}); pass one row per cell"
            )
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise InvalidInputError(
            f"feature_agreement: n_folds must be an integer >= 2, got {n_folds!r}"
        )
    dims = [c for c in feature_columns(embeddings) if c not in CELL_KEYS]
    if not dims:
        raise InvalidInputError("feature_agreement: the embeddings table has no feature column")
    joined = classical.select(*CELL_KEYS, *features).join(
        embeddings.select(*CELL_KEYS, *dims), on=list(CELL_KEYS), how="inner"
    )
    unmatched = classical.height + embeddings.height - 2 * joined.height
    if unmatched:
        warnings.warn(
            f"feature_agreement: {unmatched} cell(s) are in only one of the two tables "
            f"({classical.height} classical, {embeddings.height} embedded, {joined.height} in "
            "both) and are left out",
            UnmatchedObjectsWarning,
            stacklevel=2,
        )
    joined = joined.sort(CELL_KEYS)
    x_all = joined.select(dims).to_numpy().astype(np.float64)
    site_all = np.array([f"{p}/{w}/{s}" for p, w, s in joined.select(PLATE, WELL, SITE).rows()])
    rows = []
    for feature in features:
        y_all = joined[feature].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        keep = np.isfinite(y_all) & np.isfinite(x_all).all(axis=1)
        n = int(keep.sum())
        if n < 2 * n_folds:
            raise InvalidInputError(
                f"feature_agreement: only {n} cell(s) have a finite {feature} and embedding in "
                f"both tables; {2 * n_folds} are needed for {n_folds}-fold cross-validation"
            )
        x, y, site = x_all[keep], y_all[keep], site_all[keep]
        folds = list(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x))
        shuffled = np.random.default_rng(seed).permutation(y)
        predictions = {
            "embedding": (y, _ridge_predictions(x, y, folds)),
            "site": (y, _site_predictions(site, y, folds)),
            "shuffled": (shuffled, _ridge_predictions(x, shuffled, folds)),
        }
        for key, (truth, predicted) in predictions.items():
            rows.append(
                {
                    "feature": feature,
                    "predictor": PREDICTORS[key],
                    "r2": _out_of_fold_r2(truth, predicted),
                    "n_cells": n,
                    "n_folds": n_folds,
                }
            )
    return pl.DataFrame(
        rows,
        schema={"feature": pl.String, "predictor": pl.String, "r2": pl.Float64,
                "n_cells": pl.Int64, "n_folds": pl.Int64},
    )  # fmt: skip


def feature_agreement_chart(agreement: pl.DataFrame) -> alt.Chart:
    """Bars of cross-validated R^2 per classical feature, one per predictor.

    Parameters
    ----------
    agreement : polars.DataFrame
        :func:`feature_agreement`'s table (rows with a NaN R^2 are left out).

    Returns
    -------
    altair.Chart
        Features down, R^2 across (the axis spans every value shown, negative
        ones included), a rule at 0.

    Raises
    ------
    MissingColumnsError
        If a column is absent.
    """
    missing = [c for c in ("feature", "predictor", "r2", "n_cells") if c not in agreement.columns]
    if missing:
        raise MissingColumnsError("the agreement table for the chart", missing)
    kept, _ = finite_rows(agreement, ["r2"])
    order = list(PREDICTORS.values())
    colors = ["#2b6cb0", "#f6ad55", "#a0aec0"]
    low = min(0.0, float(kept["r2"].min())) if kept.height else 0.0
    bars = (
        alt.Chart(kept.to_pandas())
        .mark_bar()
        .encode(
            y=alt.Y(
                "feature:N",
                title=None,
                sort=list(dict.fromkeys(kept["feature"])),
                axis=alt.Axis(labelLimit=400),  # whole CellProfiler names
            ),
            yOffset=alt.YOffset("predictor:N", sort=order),
            x=alt.X(
                "r2:Q",
                title="cross-validated R² (1 = predicted exactly, 0 = the mean)",
                scale=alt.Scale(domain=[low, 1.0]),
            ),
            color=alt.Color(
                "predictor:N",
                sort=order,
                scale=alt.Scale(domain=order, range=colors),
                legend=alt.Legend(title="predicted from", orient="bottom", labelLimit=400),
            ),
            tooltip=[
                alt.Tooltip("feature:N"),
                alt.Tooltip("predictor:N"),
                alt.Tooltip("r2:Q", format=".3f", title="R²"),
                alt.Tooltip("n_cells:Q", title="cells"),
            ],
        )
    )
    zero = alt.Chart().mark_rule(color="#1f2933").encode(x=alt.datum(0))
    return alt.layer(bars, zero).properties(
        width=420, height=alt.Step(10), title="Classical features predicted from the embedding"
    )


def _counts_chart(counts: pl.DataFrame) -> alt.Chart:
    order = list(dict.fromkeys(counts["what"]))
    return (
        alt.Chart(counts.to_pandas(), title="Objects per site")
        .mark_bar()
        .encode(
            y=alt.Y("site:N", title=None),
            yOffset=alt.YOffset("what:N", sort=order),
            x=alt.X("n:Q", title="objects (count)"),
            color=alt.Color(
                "what:N",
                sort=order,
                legend=alt.Legend(title=None, orient="bottom", columns=2, labelLimit=300),
            ),
            tooltip=["site:N", "what:N", alt.Tooltip("n:Q", title="count")],
        )
        .properties(width=300, height=alt.Step(9))
    )


def _dimensions_chart(dims: pl.DataFrame) -> alt.Chart:
    base = alt.Chart(dims.to_pandas(), title="Features per cell").encode(
        y=alt.Y("what:N", title=None, sort=None),
        x=alt.X("n:Q", title="columns (count)"),
    )
    return (
        base.mark_bar(color="#4a5568") + base.mark_text(align="left", dx=3).encode(text="n:Q")
    ).properties(width=260, height=alt.Step(22))


def classical_vs_deep_section(
    classical: pl.DataFrame,
    embeddings: pl.DataFrame,
    agreement: pl.DataFrame,
    *,
    images: Mapping[tuple[str, str, int], np.ndarray],
    labels: Mapping[tuple[str, str, int], Mapping[str, np.ndarray]],
    channels: Sequence[str],
    model: str = "embedding",
    n_cells: int = 6,
    caption: str = "",
) -> ReportSection:
    """Do classical features and deep embeddings of the same cells agree?

    Parameters
    ----------
    classical, embeddings : polars.DataFrame
        The single cells of both tables (keys ``Metadata_Plate/Well/Site/ObjectNumber``).
    agreement : polars.DataFrame
        :func:`feature_agreement` of the two.
    images : mapping
        ``(plate, well, site) -> (C, H, W)`` pixels of the sites.
    labels : mapping
        ``(plate, well, site) -> {"Nuclei": ..., "Cells": ..., "Cytoplasm": ...}``
        label images the cells were measured on (the counts per compartment
        are read from them).
    channels : sequence of str
        Channel names in array order.
    model : str, default "embedding"
        Name of the embedding model, for the text.
    n_cells : int, default 6
        Cells in the crop montage, spread from the smallest to the largest area
        among the cells with a nucleus.
    caption : str
        Appended to the standard caption.

    Returns
    -------
    ReportSection
        Its answer states the cells in both tables per site, the feature
        counts, and the features the embedding predicts better than the
        site alone (R^2 of each).

    Raises
    ------
    InvalidInputError
        If a site of the cells has no label image of a compartment, or no
        prediction of the agreement table has a finite R^2.
    """
    keys = list(CELL_KEYS)
    both = classical.select(keys).join(embeddings.select(keys), on=keys, how="inner")
    counts, per_site = [], []
    for key in sorted(images):
        name = f"{key[0]} {key[1]} s{key[2]}"
        site_labels = labels.get(key, {})
        missing = [c for c in COMPARTMENTS if c not in site_labels]
        if missing:
            raise InvalidInputError(
                f"classical_vs_deep_section: site {key} has no {missing} labels"
            )
        for compartment in COMPARTMENTS:
            ids = np.unique(np.asarray(site_labels[compartment]))
            counts.append({"site": name, "what": f"{compartment} (label image)",
                           "n": int((ids > 0).sum())})  # fmt: skip
        in_site = (pl.col(PLATE) == key[0]) & (pl.col(WELL) == key[1]) & (pl.col(SITE) == key[2])
        n_both = both.filter(in_site).height
        counts += [
            {"site": name, "what": "rows, classical table", "n": classical.filter(in_site).height},
            {"site": name, "what": f"rows, {model}", "n": embeddings.filter(in_site).height},
        ]
        per_site.append(n_both)
    counts_frame = pl.DataFrame(
        counts, schema={"site": pl.String, "what": pl.String, "n": pl.Int64}
    )
    classical_features = [c for c in feature_columns(classical) if c not in keys]
    deep = [c for c in feature_columns(embeddings) if c not in keys]
    dims = pl.DataFrame(
        [{"what": f"{c}_ (classical)", "n": sum(f.startswith(f"{c}_") for f in classical_features)}
         for c in COMPARTMENTS]
        + [{"what": model, "n": len(deep)}],
        schema={"what": pl.String, "n": pl.Int64},
    )  # fmt: skip

    kept, dropped = finite_rows(agreement, ["r2"])
    if kept.height == 0:
        raise InvalidInputError("classical_vs_deep_section: no finite R² in the agreement table")
    wide = kept.pivot("predictor", index="feature", values="r2")
    emb, site = PREDICTORS["embedding"], PREDICTORS["site"]
    scored = wide.filter(pl.col(emb).is_not_null() & pl.col(site).is_not_null())
    better = scored.filter(pl.col(emb) > pl.col(site))
    detail = "; ".join(
        f"{r['feature']} {r[emb]:.2f} vs {r[site]:.2f}" for r in scored.iter_rows(named=True)
    )
    n_folds = int(kept["n_folds"][0])
    answer = (
        f"{both.height} cells on {len(per_site)} sites ({', '.join(map(str, per_site))}) have "
        f"both {len(classical_features):,} classical features and {len(deep):,} {model} "
        f"dimensions; the embedding predicts {better.height} of {scored.height} classical "
        f"features better than the site alone ({n_folds}-fold cross-validated R², embedding vs "
        f"site: {detail})."
    )
    if dropped:
        answer += f" {dropped} R² values undefined (a constant feature) not shown."

    shown = [_montage(classical, both, images, labels, channels, n_cells)] if n_cells else []
    chart = alt.vconcat(
        alt.hconcat(_counts_chart(counts_frame), _dimensions_chart(dims)),
        feature_agreement_chart(kept),
    ).resolve_scale(color="independent")
    return ReportSection(
        "Do classical features and deep embeddings of the same cells agree?",
        chart,
        "The same cells measured twice: CellProfiler-named features of each nucleus, cell and "
        "cytoplasm, and an embedding of the crop around the cell. Top: objects per site in the "
        "label images and rows per site in each table (equal bars: every cell has both); the "
        "number of features on each side. Bottom: how much of a classical feature the "
        "embedding carries, as the R² of predicting held-out cells with a ridge regression, "
        "beside the site alone (sites from different plates and sources differ in intensity, "
        "so a model can score by recognising the site) and the embedding fitted to the "
        "shuffled feature (near or below 0 when nothing leaks). Look for blue bars longer "
        "than orange ones. With tens of cells, treat the R² as a hint. " + caption,
        answer=answer,
        images=shown,
    )


def _montage(
    classical: pl.DataFrame,
    both: pl.DataFrame,
    images: Mapping[tuple[str, str, int], np.ndarray],
    labels: Mapping[tuple[str, str, int], Mapping[str, np.ndarray]],
    channels: Sequence[str],
    n_cells: int,
) -> ReportImage:
    """Crops of ``n_cells`` cells in both tables, with a nucleus, spread over the cell area."""
    from cellframe.embed.crops import BOX_SIZE

    area, nucleus = "Cells_AreaShape_Area", "Nuclei_AreaShape_Area"
    missing = [c for c in (area, nucleus) if c not in classical.columns]
    if missing:
        raise MissingColumnsError("the classical table for the crop montage", missing)
    keys = list(CELL_KEYS)
    # Cells without a nucleus (null Nuclei_ columns) have no nucleus outline to draw.
    candidates = (
        classical.join(both, on=keys, how="semi")
        .filter(pl.col(area).is_not_null() & pl.col(nucleus).is_not_null())
        .sort(keys)
    )
    if candidates.height == 0:
        raise InvalidInputError(
            "classical_vs_deep_section: no cell is in both tables with a nucleus and a cell area"
        )
    chosen = candidates[_pick_cells(candidates[area].to_numpy(), n_cells)]
    montage = cell_crop_montage(images, labels, chosen, channels=channels, size=BOX_SIZE)
    names = ", ".join(
        f"{r[PLATE]} s{r[SITE]} #{r[OBJECT_NUMBER]} ({r[area]:.0f} px)"
        for r in chosen.iter_rows(named=True)
    )
    return ReportImage(
        png_data_uri(montage),
        f"{chosen.height} of the {candidates.height} cells with a nucleus, from smallest to "
        f"largest cell area, one column each (left to right: {names}); rows: the channels "
        f"{', '.join(channels)}. Each crop is the {BOX_SIZE} x {BOX_SIZE} px box the embedding "
        "model sees (black beyond the image edge); yellow: the cell's outline, cyan: its "
        "nucleus', as measured in the classical table.",
        width=min(1000, montage.shape[1]),
    )
