"""copairs-compatible average precision from metadata pair rules, computed in blocks.

A pair (i, j), i != j, is **positive** when i and j share every ``pos_sameby``
column and differ in every ``pos_diffby`` column; **negative** when they share
every ``neg_sameby`` column and differ in every ``neg_diffby`` column (copairs'
rules). Each query ranks its positives and negatives by cosine similarity
(descending, a positive tied with a negative first) and gets the
non-interpolated AP (mean of ``k / n_k``, equal to scikit-learn's
``average_precision_score``).

copairs builds the pair lists (``O(n^2)`` for "all other treatments are
negatives"); here the rules are evaluated as boolean masks on one block of
queries at a time, so memory is ``O(n x block)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from cellframe.columns import CONTROL, NEGATIVE_CONTROL, TREATMENT, feature_columns
from cellframe.errors import InvalidInputError
from cellframe.evaluate._data import default_block_rows, encode, profile_matrix
from cellframe.evaluate._ranking import (
    RankLists,
    average_precision_from_ranks,
    rank_lists,
    segment_sums,
)
from cellframe.evaluate.crossfit import CrossFit, control_folds, fit_correction
from cellframe.evaluate.significance import normalized_average_precision
from cellframe.evaluate.similarity import ComputeOptions, check_float32_similarity, unit_rows

if TYPE_CHECKING:  # scipy is imported where labels are built
    import scipy.sparse as sp

__all__ = ["PairRules", "average_precision", "label_matrix", "phenotypic_activity", "recall_at_k"]

_REFERENCE = "__cf_reference_index"
_ROW = "Metadata_cf_crossfit_row"  # Metadata_: corrections pass it through


def label_matrix(series: pl.Series, *, sep: str = "|") -> tuple[sp.csr_matrix, list[str]]:
    """Sparse ``(n, n_labels)`` indicator of the labels of each row.

    A string value is split on ``sep`` (``"a|b"`` holds labels ``a`` and ``b``);
    a list value is used as is. Labels are stripped; empty and null ones are ignored.

    Examples
    --------
    >>> import polars as pl
    >>> m, names = label_matrix(pl.Series(["a|b", "b", None]))
    >>> names, m.toarray().tolist()
    (['a', 'b'], [[1, 1], [0, 1], [0, 0]])
    """
    import scipy.sparse as sp

    if series.dtype == pl.String:
        lists = series.str.split(sep)
    elif isinstance(series.dtype, pl.List):
        lists = series.cast(pl.List(pl.String))
    else:
        lists = series.cast(pl.String).str.split(sep)
    long = (
        pl.DataFrame({"labels": lists})
        .with_row_index("row")
        .explode("labels")
        .with_columns(pl.col("labels").str.strip_chars())
        .filter(pl.col("labels").is_not_null() & (pl.col("labels") != ""))
        .unique(["row", "labels"])
    )
    names = sorted(long["labels"].unique().to_list())
    code = {name: i for i, name in enumerate(names)}
    cols = np.array([code[v] for v in long["labels"].to_list()], dtype=np.int64)
    rows = long["row"].to_numpy().astype(np.int64)
    mat = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(series), len(names))
    )
    return mat, names


def _mask(
    codes_same: list[np.ndarray], codes_diff: list[np.ndarray], q: np.ndarray, n: int
) -> np.ndarray:
    out = np.ones((len(q), n), dtype=bool)
    for c in codes_same:
        out &= c[q][:, None] == c[None, :]
    for c in codes_diff:
        out &= c[q][:, None] != c[None, :]
    return out


def _check_rules(pos_sameby, pos_diffby, neg_sameby, neg_diffby) -> None:
    for name, same, diff in (("pos", pos_sameby, pos_diffby), ("neg", neg_sameby, neg_diffby)):
        if not (len(same) or len(diff)):
            raise InvalidInputError(f"give at least one of {name}_sameby / {name}_diffby")
        both = set(same) & set(diff)
        if both:
            raise InvalidInputError(
                f"{name}_sameby and {name}_diffby must be disjoint; both name {sorted(both)}"
            )


@dataclass(frozen=True)
class PairRules:
    """copairs' pair rules: which pairs of profiles are positives and which negatives.

    A pair is positive when the two profiles share every ``pos_sameby``
    column and differ in every ``pos_diffby`` column; negative when they share
    every ``neg_sameby`` column and differ in every ``neg_diffby`` column
    (see the module docstring).

    Parameters
    ----------
    pos_sameby, pos_diffby, neg_sameby, neg_diffby : sequence of str
        The rule columns (stored as tuples).
    multilabel : str, optional
        A column of several labels (``"a|b"`` strings or lists) that must be in
        ``pos_sameby``: AP is then computed per (query, label), positives being
        the profiles holding that label and negatives those sharing no label
        with the query (copairs' ``multilabel.average_precision``).
    sep : str, default "|"
        Separator of labels in a string ``multilabel`` column.

    Raises
    ------
    InvalidInputError
        When a side has no rule, a column is both "same" and "diff" on one
        side, or ``multilabel`` is not in ``pos_sameby``.

    Examples
    --------
    >>> rules = PairRules(pos_sameby=["Metadata_Treatment"], neg_diffby=["Metadata_Treatment"])
    >>> rules.pos_sameby, rules.neg_sameby
    (('Metadata_Treatment',), ())
    """

    pos_sameby: Sequence[str] = ()
    pos_diffby: Sequence[str] = ()
    neg_sameby: Sequence[str] = ()
    neg_diffby: Sequence[str] = ()
    multilabel: str | None = None
    sep: str = "|"

    def __post_init__(self) -> None:
        for name in ("pos_sameby", "pos_diffby", "neg_sameby", "neg_diffby"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise InvalidInputError(
                    f"PairRules: {name} must be a sequence of column names, got the string "
                    f"{value!r}; write {name}=[{value!r}]"
                )
            object.__setattr__(self, name, tuple(value))
        _check_rules(self.pos_sameby, self.pos_diffby, self.neg_sameby, self.neg_diffby)
        if self.multilabel is not None and self.multilabel not in self.pos_sameby:
            raise InvalidInputError(
                f"multilabel column {self.multilabel!r} must be in pos_sameby "
                "(positives share a label)"
            )


def _average_precision(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    pos_sameby: Sequence[str],
    pos_diffby: Sequence[str],
    neg_sameby: Sequence[str],
    neg_diffby: Sequence[str],
    multilabel: str | None,
    sep: str,
    features: Sequence[str] | None,
    keep: Sequence[str],
    dtype: type[np.floating],
    block_rows: int | None,
    progress: bool,
    expect_positives: np.ndarray | None = None,
    recall_k: Sequence[int] = (),
) -> pl.DataFrame:
    pos_sameby, pos_diffby = list(pos_sameby), list(pos_diffby)
    neg_sameby, neg_diffby = list(neg_sameby), list(neg_diffby)
    _check_rules(pos_sameby, pos_diffby, neg_sameby, neg_diffby)
    rule_cols = list(dict.fromkeys([*pos_sameby, *pos_diffby, *neg_sameby, *neg_diffby]))
    if multilabel is not None:
        if multilabel not in pos_sameby:
            raise InvalidInputError(
                f"multilabel column {multilabel!r} must be in pos_sameby (positives share a label)"
            )
        pos_sameby = [c for c in pos_sameby if c != multilabel]
        neg_diffby = [c for c in neg_diffby if c != multilabel]
        neg_sameby = [c for c in neg_sameby if c != multilabel]
    pm = profile_matrix(
        profiles,
        features=features,
        metadata=[*keep],
        required_labels=rule_cols,
        dtype=dtype,
        what="profiles",
    )
    meta, n = pm.meta, pm.n
    codes = {c: encode(meta[c]) for c in rule_cols}
    ps, pd_ = [codes[c] for c in pos_sameby], [codes[c] for c in pos_diffby]
    ns, nd = [codes[c] for c in neg_sameby], [codes[c] for c in neg_diffby]
    invalid = ~pm.valid
    labels_csr = labels_t = None
    label_names: list[str] = []
    if multilabel is not None:
        labels_csr, label_names = label_matrix(meta[multilabel], sep=sep)
        labels_t = labels_csr.T.tocsr()

    def spec(q: np.ndarray):
        b = len(q)
        pos = _mask(ps, pd_, q, n)
        neg = _mask(ns, nd, q, n)
        for m in (pos, neg):
            m[:, invalid] = False
            m[np.arange(b), q] = False
        if labels_csr is None:
            return np.arange(b), pos, neg, None
        lq = labels_csr[q]
        shared = (lq @ labels_t).toarray() > 0
        neg &= ~shared
        rows, labs = lq.nonzero()
        order = np.lexsort((labs, rows))
        rows, labs = rows[order], labs[order]
        pos_lab = labels_t[labs].toarray().astype(bool) & pos[rows]
        return rows, pos_lab, neg[rows], labs

    queries = np.flatnonzero(pm.valid)
    x_unit = unit_rows(pm.x, dtype=dtype)
    if dtype == np.float32:
        check_float32_similarity(pm.x, unit=x_unit)
    b = block_rows or min(1024, default_block_rows(n, bytes_per_cell=20))
    lists = rank_lists(x_unit, spec, queries=queries, block_rows=b, progress=progress, desc="AP")
    if int(lists.n_pos.sum()) == 0:
        raise InvalidInputError(
            f"no positive pairs: no two usable profiles share {pos_sameby or [multilabel]} "
            f"while differing in {pos_diffby}; check the rules and that replicates exist"
        )
    if int(lists.n_neg.sum()) == 0:
        raise InvalidInputError(
            "no negative pairs: with a single treatment (or no controls) there is nothing "
            f"to rank positives against; neg_sameby={neg_sameby}, neg_diffby={neg_diffby}"
        )
    ap = average_precision_from_ranks(lists)
    out = pl.DataFrame(
        {
            "row": lists.query.astype(np.uint32),
            "average_precision": pl.Series(ap).fill_nan(None),
            "normalized_average_precision": pl.Series(
                normalized_average_precision(ap, lists.n_pos, lists.n_total)
            ).fill_nan(None),
            "n_pos_pairs": lists.n_pos,
            "n_total_pairs": lists.n_total,
        }
    )
    if recall_k:
        out = out.with_columns(
            pl.Series(f"recall_at_{k}", _recall(lists, k)).fill_nan(None) for k in recall_k
        )
    if multilabel is not None:
        assert lists.label is not None
        names = np.array(label_names, dtype=object)[lists.label]
        out = out.with_columns(pl.Series(multilabel, names.tolist(), dtype=pl.String))
        out = out.filter(pl.col("n_pos_pairs") > 0)
        base = meta.drop(multilabel)
        out = base.join(out, on="row", how="inner").sort(["row", multilabel])
        unscored = np.setdiff1d(queries, out["row"].to_numpy())
    else:
        out = meta.join(out, on="row", how="left").with_columns(
            pl.col("n_pos_pairs").fill_null(0), pl.col("n_total_pairs").fill_null(0)
        )
        no_pos = out["n_pos_pairs"].to_numpy() == 0
        unscored = np.flatnonzero(no_pos & pm.valid)
    if expect_positives is not None:
        unscored = unscored[expect_positives[unscored]]
    if len(unscored):
        warnings.warn(
            f"{len(unscored)} of {len(queries)} queries have no positive pair (no replicate "
            "under the rules): their AP is null and they are left out of mAP",
            RuntimeWarning,
            stacklevel=3,
        )
    return out


def _recall(lists: RankLists, k: int) -> np.ndarray:
    """Share of each list's positives ranked within the first ``k`` candidates (NaN without)."""
    within = segment_sums((lists.ranks <= k).astype(np.float64), lists)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(lists.n_pos > 0, within / lists.n_pos, np.nan)


def average_precision(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    rules: PairRules,
    features: Sequence[str] | None = None,
    keep: Sequence[str] = (),
    compute: ComputeOptions | None = None,
) -> pl.DataFrame:
    """copairs-compatible average precision of every profile (non-interpolated, cosine).

    Parameters
    ----------
    profiles : polars.DataFrame or LazyFrame
        One row per profile.
    rules : PairRules
        copairs' pair rules (positives, negatives, an optional multi-label column).
    features : sequence of str, optional
        Feature columns (default: all numeric non-``Metadata_`` columns).
    keep : sequence of str
        Extra metadata columns to carry into the result.
    compute : ComputeOptions, optional
        Arithmetic type, queries per block, progress bar; ``ComputeOptions()``
        (float32, automatic blocks, no bar) by default.

    Returns
    -------
    polars.DataFrame
        One row per profile (per (profile, label) with ``multilabel``): the rule
        and ``keep`` columns, ``row`` (input position), ``average_precision``
        (null without positives), ``normalized_average_precision`` (chance-
        normalized, ``(AP - E[AP]) / (1 - E[AP])``, see
        :func:`~cellframe.evaluate.normalized_average_precision`; null without
        positives or negatives), ``n_pos_pairs``, ``n_total_pairs``.

    Raises
    ------
    InvalidInputError
        Bad rules, NaN features, no positive or no negative pair at all (for
        example a single treatment).
    MissingColumnsError
        A rule column is absent.

    Warns
    -----
    RuntimeWarning
        With the count of queries without positives, of all-zero profiles and
        of rows whose rule columns are null (those rows are left out).
    """
    return _average_precision_by_rules(profiles, rules, features, keep, compute)


def _average_precision_by_rules(
    profiles: pl.DataFrame | pl.LazyFrame,
    rules: PairRules,
    features: Sequence[str] | None,
    keep: Sequence[str],
    compute: ComputeOptions | None,
    recall_k: Sequence[int] = (),
) -> pl.DataFrame:
    """:func:`_average_precision` with the pair rules and compute options unpacked once."""
    compute = ComputeOptions() if compute is None else compute
    return _average_precision(
        profiles,
        pos_sameby=rules.pos_sameby,
        pos_diffby=rules.pos_diffby,
        neg_sameby=rules.neg_sameby,
        neg_diffby=rules.neg_diffby,
        multilabel=rules.multilabel,
        sep=rules.sep,
        features=features,
        keep=keep,
        dtype=compute.dtype,
        block_rows=compute.block_rows,
        progress=compute.progress,
        recall_k=recall_k,
    )


def phenotypic_activity(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    treatment: str = TREATMENT,
    controls: pl.Expr | None = None,
    same_plate: bool = False,
    plate: str = "Metadata_Plate",
    features: Sequence[str] | None = None,
    keep: Sequence[str] = (),
    compute: ComputeOptions | None = None,
    cross_fit: CrossFit | None = None,
) -> pl.DataFrame:
    """AP of each profile retrieving its replicates against negative controls.

    The copairs "phenotypic activity" recipe: positives are the other profiles
    of the same treatment; negatives are the negative-control profiles (on the
    same plate with ``same_plate=True``). Controls themselves get no positives.

    Parameters
    ----------
    profiles : polars.DataFrame or LazyFrame
        One row per profile.
    treatment : str
        Column identifying the treatment (compound, gene, ...).
    controls : polars.Expr, optional
        True for negative-control rows; default ``Metadata_Control == "negcon"``.
    same_plate : bool
        Restrict negatives to controls on the query's plate.
    plate : str
        Plate column used with ``same_plate``.
    features, keep, compute
        As in :func:`average_precision`.
    cross_fit : CrossFit, optional
        A correction fitted on control wells (sphering, normalization), given
        *unfitted*, with its folds (:class:`~cellframe.evaluate.CrossFit`, e.g.
        ``CrossFit(lambda rows: Spherizer(lam=1e-2).fit(rows))``). ``profiles``
        are then the *pre-correction* profiles and the activity is cross-fitted
        (see :mod:`cellframe.evaluate.crossfit`): for each of ``n_folds`` folds
        of the controls (stratified per ``plate`` when that column exists), the
        correction is fitted on every row except that fold's controls, and
        each treatment well is ranked against the held-out controls only.
        Without it the controls are used as given (copairs' recipe).

    Returns
    -------
    polars.DataFrame
        As :func:`average_precision`, plus ``is_control``. With a correction,
        one row per (profile, fold) it was scored in, with a ``fold`` column:
        a treatment well appears once per fold, a control once (its held-out
        fold, with a null AP). Pass the treatment rows to
        :func:`~cellframe.evaluate.mean_average_precision` to average over
        replicates and folds.

    Raises
    ------
    InvalidInputError
        No control row, more folds than controls, or a correction that
        returns no ``transform``.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({
    ...     "Metadata_Treatment": ["a", "a", "dmso", "dmso"],
    ...     "f1": [1.0, 0.9, 0.0, 0.1], "f2": [0.0, 0.1, 1.0, 0.9]})
    >>> ap = phenotypic_activity(df, controls=pl.col("Metadata_Treatment") == "dmso")
    >>> ap.filter(~pl.col("is_control"))["average_precision"].to_list()
    [1.0, 1.0]
    """
    compute = ComputeOptions() if compute is None else compute
    df = profiles.collect() if isinstance(profiles, pl.LazyFrame) else profiles
    # Decide the features before the helper columns below are added.
    features = list(features) if features is not None else feature_columns(df)
    if controls is None:
        if CONTROL not in df.columns:
            raise InvalidInputError(
                f"no {CONTROL!r} column to find negative controls; pass controls=, e.g. "
                f"pl.col({treatment!r}) == 'DMSO'"
            )
        controls = pl.col(CONTROL) == NEGATIVE_CONTROL
    is_ctrl = df.select(controls.fill_null(False).alias("c"))["c"].to_numpy().astype(bool)
    if not is_ctrl.any():
        raise InvalidInputError(
            "no negative-control rows matched the controls expression: phenotypic activity "
            "ranks replicates against controls; check controls="
        )

    def score(frame: pl.DataFrame, ctrl: np.ndarray, feats: list[str]) -> pl.DataFrame:
        # copairs' reference-index trick: each control gets its own index, so no two
        # controls form a positive pair and every negative pair is (treatment, control).
        ref = np.where(ctrl, np.arange(frame.height), -1)
        frame = frame.with_columns(pl.Series(_REFERENCE, ref), pl.Series("is_control", ctrl))
        out = _average_precision(
            frame,
            pos_sameby=[treatment, _REFERENCE],
            pos_diffby=[],
            neg_sameby=[plate] if same_plate else [],
            neg_diffby=[treatment, _REFERENCE],
            multilabel=None,
            sep="|",
            features=feats,
            keep=[*keep, "is_control"],
            dtype=compute.dtype,
            block_rows=compute.block_rows,
            progress=compute.progress,
            expect_positives=~ctrl,
        )
        return out.drop(_REFERENCE)

    if cross_fit is None:
        return score(df, is_ctrl, features)
    return _cross_fitted(
        df, is_ctrl, features, score, correction=cross_fit.correction,
        n_folds=cross_fit.n_folds, seed=cross_fit.seed, plate=plate,
    )  # fmt: skip


def _cross_fitted(
    df: pl.DataFrame,
    is_ctrl: np.ndarray,
    features: list[str],
    score: Callable[[pl.DataFrame, np.ndarray, list[str]], pl.DataFrame],
    *,
    correction: Any,
    n_folds: int,
    seed: int,
    plate: str,
) -> pl.DataFrame:
    """Score each fold's held-out controls against a correction fitted without them."""
    strata = encode(df[plate]) if plate in df.columns else None
    folds = control_folds(is_ctrl, n_folds=n_folds, seed=seed, strata=strata)
    metadata = [c for c in df.columns if c not in set(features)]
    base = df.select([*metadata, *features]).with_row_index(_ROW)
    parts = []
    for f in range(n_folds):
        held_out = folds == f
        fit_rows = base.filter(pl.Series(~held_out)).drop(_ROW)
        fitted = fit_correction(correction, fit_rows)
        scored = base.filter(pl.Series(~is_ctrl | held_out))
        out = fitted.transform(scored).lazy().collect()
        if _ROW not in out.columns or out.height != scored.height:
            raise InvalidInputError(
                "the correction's transform must keep every row and the metadata columns "
                f"(fold {f}: {scored.height} rows in, {out.height} out)"
            )
        original = out[_ROW].to_numpy()
        res = score(out.drop(_ROW), is_ctrl[original], feature_columns(out))
        parts.append(
            res.with_columns(
                pl.Series("row", original[res["row"].to_numpy()], dtype=pl.UInt32),
                pl.lit(f, dtype=pl.Int32).alias("fold"),
            )
        )
    return pl.concat(parts).sort(["row", "fold"])


def recall_at_k(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    k: int | Sequence[int],
    rules: PairRules,
    features: Sequence[str] | None = None,
    keep: Sequence[str] = (),
    compute: ComputeOptions | None = None,
) -> pl.DataFrame:
    """Recall@k of every profile under copairs' pair rules, beside its AP.

    A query's candidates (its positives and negatives under the rules) are
    ranked by cosine similarity exactly as for :func:`average_precision` (a
    positive tied with a negative first); recall@k is the share of the
    query's positives among its ``k`` most similar candidates (DOMAIN.md §7).
    With ``k`` at least the number of candidates it is 1.

    Parameters
    ----------
    profiles : polars.DataFrame or LazyFrame
        One row per profile.
    k : int or sequence of int
        Cut-off(s), each ``>= 1``; one ``recall_at_<k>`` column per value.
    rules, features, keep, compute
        As in :func:`average_precision`.

    Returns
    -------
    polars.DataFrame
        The :func:`average_precision` table plus ``recall_at_<k>`` columns
        (null for a query without positives).

    Raises
    ------
    InvalidInputError
        A ``k`` below 1 or not an integer, and the errors of :func:`average_precision`.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"Metadata_Treatment": ["a", "a", "b", "b"],
    ...                    "f1": [1.0, 0.0, 0.9, 0.1], "f2": [0.0, 1.0, 0.1, 0.9]})
    >>> rules = PairRules(pos_sameby=["Metadata_Treatment"], neg_diffby=["Metadata_Treatment"])
    >>> recall_at_k(df, k=[1, 2], rules=rules).select("recall_at_1", "recall_at_2").rows()
    [(0.0, 0.0), (0.0, 0.0), (0.0, 1.0), (0.0, 1.0)]
    """
    ks = [k] if isinstance(k, int | np.integer | float) else list(k)
    bad = [v for v in ks if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1]
    if not ks or bad:
        raise InvalidInputError(
            f"k must be a positive integer or a non-empty list of them; got {k!r}"
        )
    recall_k = [int(v) for v in dict.fromkeys(ks)]
    return _average_precision_by_rules(profiles, rules, features, keep, compute, recall_k)
