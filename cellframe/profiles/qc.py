"""Quality control of profiles: PCA of wells, outlier wells, image quality (DOMAIN.md §2).

* :func:`pca_profiles` — principal components of (well) profiles, to plot
  coloured by plate.
* :func:`flag_outlier_wells` — wells whose score on one of the first PCs is
  far from the others by a robust z-score, (x - median) / (1.4826 * MAD),
  with the reason.
* :func:`image_qc` — images flagged from CellProfiler's image-quality
  measurements: ``ImageQuality_PowerLogLogSlope_<channel>`` (focus: a robust
  z-score far from the other images) and ``ImageQuality_PercentMaximal_<channel>``
  (saturation: percent of pixels at the maximum intensity).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from cellframe.columns import PLATE, is_metadata
from cellframe.errors import InvalidInputError, MissingColumnsError, NaNExcludedWarning
from cellframe.profiles._common import resolve_features, schema_of, short_list, to_numpy64, warn
from cellframe.profiles._fitted import ColumnStatistics

__all__ = [
    "PCA",
    "PCAResult",
    "flag_outlier_wells",
    "image_qc",
    "image_quality_columns",
    "pca_profiles",
    "robust_z",
]

OUTLIER = "Metadata_QC_Outlier"
REASON = "Metadata_QC_Reason"

#: 1.4826 * MAD estimates the standard deviation of a normal sample.
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class PCAResult:
    """Principal components of profiles.

    Attributes
    ----------
    scores : polars.DataFrame
        The input's metadata columns, then ``PC1 ... PCk`` (Float64).
    explained_variance_ratio : numpy.ndarray, shape (k,)
        Fraction of the total variance each component explains.
    components : numpy.ndarray, shape (k, d)
        Loadings (rows are components), signed so that each row's
        largest absolute loading is positive (as scikit-learn 1.5+).
    features : list of str
        The features used (those without missing values).
    """

    scores: pl.DataFrame
    explained_variance_ratio: np.ndarray
    components: np.ndarray
    features: list[str]


def robust_z(values: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 * MAD), NaN-aware; 0 where the MAD is 0 and x equals the median.

    Examples
    --------
    >>> robust_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0])).round(3).tolist()
    [-1.349, -0.674, 0.0, 0.674, 65.426]
    """
    x = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        # An all-NaN column gives NaN z-scores; callers count and report them.
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(x, axis=0)
        mad = MAD_SCALE * np.nanmedian(np.abs(x - med), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x - med) / mad
    return np.where((x - med) == 0, 0.0, z)


def pca_profiles(
    lf: pl.LazyFrame | pl.DataFrame,
    n_components: int = 2,
    *,
    features: Sequence[str] | None = None,
    standardize: bool = False,
) -> PCAResult:
    """PCA of profiles (exact SVD of the centred float64 matrix).

    Parameters
    ----------
    lf : polars.LazyFrame or DataFrame
        Profiles, usually wells.
    n_components : int, default 2
        Components to keep (at most min(rows, features)).
    features : sequence of str, optional
        Features (default: every numeric non-metadata column). Features with
        missing values are left out with a warning.
    standardize : bool, default False
        Divide each feature by its std first (PCA of the correlation matrix).

    Returns
    -------
    PCAResult

    Examples
    --------
    >>> import polars as pl
    >>> wells = pl.DataFrame({"Metadata_Well": ["A01", "A02", "A03", "A04"],
    ...                       "f1": [0.0, 1.0, 2.0, 3.0], "f2": [0.0, 2.0, 4.0, 6.0]})
    >>> result = pca_profiles(wells, 1)  # the points lie on the line f2 = 2 f1
    >>> result.explained_variance_ratio, result.components.round(4)
    (array([1.]), array([[0.4472, 0.8944]]))
    >>> result.scores["PC1"].round(4).to_list()
    [-3.3541, -1.118, 1.118, 3.3541]
    """
    df = lf.lazy().collect()
    feats = resolve_features(df, features, "the profiles for PCA")
    x = to_numpy64(df, feats)
    missing = np.isnan(x).any(axis=0)
    if missing.any():
        gone = [f for f, m in zip(feats, missing, strict=True) if m]
        warn(f"{len(gone)} feature(s) with missing values left out of the PCA: {short_list(gone)}")
        feats = [f for f, m in zip(feats, missing, strict=True) if not m]
        x = x[:, ~missing]
    n, d = x.shape
    k = min(n_components, n, d)
    if n < 2 or d == 0 or n_components < 1:
        raise InvalidInputError(
            f"PCA needs at least 2 profiles and 1 complete feature (got {n} x {d}) "
            f"and n_components >= 1 (got {n_components})"
        )
    xc = x - x.mean(axis=0)
    if standardize:
        std = xc.std(axis=0)
        # A feature whose values are all equal has no spread, whatever the
        # rounding residue of its mean leaves in ``std``.
        keep = (std > 0) & (np.ptp(x, axis=0) > 0)
        xc = xc[:, keep] / std[keep]
        feats = [f for f, kk in zip(feats, keep, strict=True) if kk]
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    vt = vt * signs[:, None]
    total = (s**2).sum()
    ratio = (s**2 / total)[:k] if total > 0 else np.zeros(k)
    scores = xc @ vt[:k].T
    meta = df.select([c for c in df.columns if is_metadata(c)])
    pcs = pl.DataFrame({f"PC{i + 1}": scores[:, i] for i in range(k)})
    return PCAResult(
        scores=pl.concat([meta, pcs], how="horizontal"),
        explained_variance_ratio=ratio,
        components=vt[:k],
        features=feats,
    )


class PCA:
    """A PCA of profiles as a fitted step, from exact mergeable moments.

    Fitted from :class:`~cellframe.profiles._fitted.ColumnStatistics` with
    cross-moments (the covariance of all rows, however they were split), it
    equals :func:`pca_profiles` to floating-point rounding: the same features
    (those with a missing value anywhere are left out, with a warning), the
    same axes and signs (each axis' largest absolute loading positive).

    Parameters
    ----------
    n_components : int, default 2
    features : sequence of str, optional
        Default: every numeric non-metadata column.
    standardize : bool, default False
        PCA of the correlation matrix (features without spread left out).

    Attributes
    ----------
    features_ : list of str
    mean_, scale_ : numpy.ndarray, shape (d,)
        Profiles are scored as ``((x - mean_) / scale_) @ components_.T``.
    components_ : numpy.ndarray, shape (k, d)
    explained_variance_ratio_ : numpy.ndarray, shape (k,)
    n_rows_ : int

    Examples
    --------
    >>> df = pl.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [0.0, 2.0, 4.0, 6.1]})
    >>> PCA(1).fit(df).explained_variance_ratio_.round(4).tolist()
    [1.0]
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        features: Sequence[str] | None = None,
        standardize: bool = False,
    ) -> None:
        self.n_components = int(n_components)
        self.features = None if features is None else list(features)
        self.standardize = bool(standardize)

    def parameters(self) -> dict[str, object]:
        """JSON-serialisable parameters."""
        return {"n_components": self.n_components, "standardize": self.standardize}

    def statistics(self, frame: pl.LazyFrame | pl.DataFrame) -> ColumnStatistics:
        """Counts, means and cross-moments of ``frame``'s features (mergeable, exact)."""
        df = frame.lazy().collect() if isinstance(frame, pl.LazyFrame) else frame
        feats = resolve_features(df, self.features, "the profiles for PCA")
        return ColumnStatistics.of(to_numpy64(df, feats), feats, moments=True)

    def from_statistics(self, stats: ColumnStatistics) -> PCA:
        """Fit the principal axes from (merged) statistics.

        Raises
        ------
        InvalidInputError
            With fewer than 2 rows, no complete feature or ``n_components < 1``.
        """
        feats = stats.features
        complete = stats.count == stats.n_rows
        if not complete.all():
            gone = [f for f, c in zip(feats, complete, strict=True) if not c]
            warn(
                f"{len(gone)} feature(s) with missing values left out of the PCA: "
                f"{short_list(gone)}"
            )
        index = np.flatnonzero(complete)
        n, d = stats.n_rows, index.size
        if n < 2 or d == 0 or self.n_components < 1:
            raise InvalidInputError(
                f"PCA needs at least 2 profiles and 1 complete feature (got {n} x {d}) "
                f"and n_components >= 1 (got {self.n_components})"
            )
        assert stats.moments is not None
        cov = stats.moments.subset(index).rebased(stats.mean[index]).covariance()
        mean = stats.mean[index]
        scale = np.ones(d)
        if self.standardize:
            std = np.sqrt(np.clip(np.diag(cov), 0.0, None))
            keep = (std > 0) & ~stats.constant[index]
            index, mean, std = index[keep], mean[keep], std[keep]
            cov = cov[np.ix_(keep, keep)] / np.outer(std, std)
            scale = std
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1]
        k = min(self.n_components, n, index.size)
        components = evecs[:, order[:k]].T
        signs = np.sign(components[np.arange(k), np.argmax(np.abs(components), axis=1)])
        signs[signs == 0] = 1.0
        total = float(np.trace(cov))
        self.features_ = [feats[i] for i in index]
        self.mean_, self.scale_ = mean, scale
        self.components_ = components * signs[:, None]
        self.explained_variance_ratio_ = (
            np.clip(evals[order[:k]], 0.0, None) / total if total > 0 else np.zeros(k)
        )
        self.n_rows_ = int(n)
        return self

    def fit(self, frame: pl.LazyFrame | pl.DataFrame) -> PCA:
        """Fit on ``frame``'s rows."""
        return self.from_statistics(self.statistics(frame))

    def scores(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The metadata columns of ``frame``, then ``PC1 ... PCk`` (Float64)."""
        if not hasattr(self, "components_"):
            raise InvalidInputError("this PCA is not fitted; call fit(...) first")
        x = (to_numpy64(frame, self.features_) - self.mean_) / self.scale_
        values = x @ self.components_.T
        meta = frame.select([c for c in frame.columns if is_metadata(c)])
        k = values.shape[1]
        pcs = pl.DataFrame(
            {f"PC{i + 1}": values[:, i] for i in range(k)},
            schema={f"PC{i + 1}": pl.Float64 for i in range(k)},
        )
        return pl.concat([meta, pcs], how="horizontal")

    def transform(self, frame: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """:meth:`scores` of ``frame`` as a LazyFrame."""
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        return self.scores(df).lazy()

    def to_frame(self) -> pl.DataFrame:
        """The fit as a table: rows ``mean``, ``scale``, ``PC1 ... PCk``; features as columns."""
        if not hasattr(self, "components_"):
            raise InvalidInputError("this PCA is not fitted; call fit(...) first")
        rows = np.vstack([self.mean_, self.scale_, self.components_])
        labels = ["mean", "scale", *[f"PC{i + 1}" for i in range(len(self.components_))]]
        frame = pl.DataFrame(rows, schema=dict.fromkeys(self.features_, pl.Float64), orient="row")
        return frame.insert_column(0, pl.Series("Metadata_Row", labels))

    @classmethod
    def from_frame(
        cls, frame: pl.DataFrame, explained_variance_ratio: Sequence[float] | None = None
    ) -> PCA:
        """A fitted PCA from :meth:`to_frame`'s table.

        Raises
        ------
        InvalidInputError
            If the table is not a saved PCA.
        """
        labels = frame["Metadata_Row"].to_list() if "Metadata_Row" in frame.columns else []
        if labels[:2] != ["mean", "scale"]:
            raise InvalidInputError(
                "this table is not a saved PCA: its Metadata_Row column must start with "
                "'mean', 'scale'"
            )
        feats = [c for c in frame.columns if c != "Metadata_Row"]
        values = frame.select(feats).to_numpy().astype(np.float64)
        obj = cls(len(labels) - 2, features=feats)
        obj.features_ = feats
        obj.mean_, obj.scale_, obj.components_ = values[0], values[1], values[2:]
        k = len(labels) - 2
        obj.explained_variance_ratio_ = (
            np.full(k, np.nan)
            if explained_variance_ratio is None
            else np.asarray(explained_variance_ratio, dtype=np.float64)
        )
        obj.n_rows_ = 0
        return obj

    def __repr__(self) -> str:
        return f"PCA({self.n_components}, standardize={self.standardize})"


def flag_outlier_wells(
    lf: pl.LazyFrame | pl.DataFrame,
    *,
    n_components: int = 3,
    z_threshold: float = 3.5,
    by: Sequence[str] | None = (PLATE,),
    features: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Flag wells whose score on one of the first PCs is an outlier.

    The PCA is fitted on all wells together; the robust z-score of each PC
    is computed within each ``by`` group (per plate by default), so a plate
    shifted as a whole is not flagged well by well.

    Parameters
    ----------
    lf : polars.LazyFrame or DataFrame
        Well profiles.
    n_components : int, default 3
        Leading PCs to check.
    z_threshold : float, default 3.5
        A well is an outlier when |robust z| > this on any checked PC
        (3.5 is Iglewicz and Hoaglin's cut-off for the modified z-score).
    by : sequence of str or None, default ("Metadata_Plate",)
        Groups within which the z-scores are computed; ``None`` for all wells.
    features : sequence of str, optional
        Features of the PCA (default: every numeric non-metadata column).

    Returns
    -------
    polars.DataFrame
        The metadata columns, ``PC1..PCk``, ``Metadata_QC_Outlier`` (bool) and
        ``Metadata_QC_Reason`` (null for wells kept), one row per input row.

    Examples
    --------
    Twelve wells of one plate, one of them shifted far from the others:

    >>> import numpy as np
    >>> import polars as pl
    >>> import warnings
    >>> x = np.random.default_rng(0).normal(size=(12, 3))
    >>> x[5] += 12
    >>> wells = pl.DataFrame({"Metadata_Plate": ["P"] * 12,
    ...                       "Metadata_Well": [f"A{i:02d}" for i in range(1, 13)],
    ...                       "f1": x[:, 0], "f2": x[:, 1], "f3": x[:, 2]})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     flagged = flag_outlier_wells(wells, n_components=2)
    >>> [str(w.message) for w in caught]
    ['1 of 12 well(s) flagged as outliers on the first 2 PC(s)']
    >>> flagged.filter(pl.col("Metadata_QC_Outlier")).select(
    ...     "Metadata_Well", "Metadata_QC_Reason").rows()
    [('A06', 'PC1 robust z = +23.41 (|z| > 3.5)')]
    """
    result = pca_profiles(lf, n_components, features=features)
    out = _flag_scores(result.scores, z_threshold=z_threshold, by=by)
    n_out = int(out[OUTLIER].sum())
    if n_out:
        k = len(result.components)
        warn(f"{n_out} of {out.height} well(s) flagged as outliers on the first {k} PC(s)")
    return out


def _flag_scores(
    scores: pl.DataFrame, *, z_threshold: float, by: Sequence[str] | None
) -> pl.DataFrame:
    """Outlier flags from PC scores: robust z of each PC within each ``by`` group."""
    pcs = [c for c in scores.columns if re.fullmatch(r"PC\d+", c)]
    groups = [c for c in (by or []) if c in scores.columns]
    if by and len(groups) != len(list(by)):
        raise MissingColumnsError("the profiles for QC", [c for c in by if c not in scores.columns])
    values = scores.select(pcs).to_numpy().astype(np.float64)
    z = np.zeros((scores.height, len(pcs)))
    if groups:
        ids = scores.select(pl.struct(groups).rank("dense").alias("g"))["g"].to_numpy()
        for g in np.unique(ids):
            mask = ids == g
            z[mask] = robust_z(values[mask])
    else:
        z = robust_z(values)
    _warn_undecided(np.isnan(z).any(axis=1), "well(s)", "a NaN robust z-score on a PC")
    reasons: list[str | None] = []
    for row in z:
        parts = [
            f"{pc} robust z = {v:+.2f} (|z| > {z_threshold:g})"
            for pc, v in zip(pcs, row, strict=True)
            if not np.isnan(v) and abs(v) > z_threshold
        ]
        reasons.append("; ".join(parts) if parts else None)
    flags = pl.Series(OUTLIER, [r is not None for r in reasons])
    return scores.with_columns(flags, pl.Series(REASON, reasons, dtype=pl.String))


def _warn_undecided(undecided: np.ndarray, what: str, why: str) -> None:
    """Report rows a NaN kept from being judged: NaN is never compared with a threshold."""
    n = int(np.count_nonzero(undecided))
    if n:
        warnings.warn(
            f"{n} of {len(undecided)} {what} have {why} (missing values or a group with "
            "too few rows): not flagged on it, since NaN is neither above nor below a "
            "threshold; check them by hand",
            NaNExcludedWarning,
            stacklevel=4,
        )


_FOCUS = re.compile(r"ImageQuality_PowerLogLogSlope_(.+)$")
_SATURATION = re.compile(r"ImageQuality_PercentMaximal_(.+)$")


def image_qc(
    lf: pl.LazyFrame | pl.DataFrame,
    *,
    focus_z: float = 4.0,
    max_saturated_percent: float = 1.0,
    by: Sequence[str] | None = (PLATE,),
) -> pl.DataFrame:
    """Flag out-of-focus and saturated images from CellProfiler's image-quality columns.

    Parameters
    ----------
    lf : polars.LazyFrame or DataFrame
        One row per image with ``..._ImageQuality_PowerLogLogSlope_<channel>``
        and/or ``..._ImageQuality_PercentMaximal_<channel>`` columns.
    focus_z : float, default 4.0
        An image is out of focus in a channel when the robust z-score of its
        PowerLogLogSlope (within its ``by`` group) is beyond ± ``focus_z``
        (blurred images have steeper, more negative slopes).
    max_saturated_percent : float, default 1.0
        An image is saturated in a channel when more than this percent of its
        pixels sit at the maximum intensity.
    by : sequence of str or None, default ("Metadata_Plate",)
        Groups for the focus z-scores.

    Returns
    -------
    polars.DataFrame
        The metadata columns, ``Metadata_QC_Outlier`` and ``Metadata_QC_Reason``.

    Raises
    ------
    MissingColumnsError
        If there is no image-quality column.

    Examples
    --------
    Six images of one plate: site 3 is saturated, site 6 blurred (a much
    steeper PowerLogLogSlope than the others):

    >>> import polars as pl
    >>> import warnings
    >>> images = pl.DataFrame({
    ...     "Metadata_Plate": ["P"] * 6, "Metadata_Site": [1, 2, 3, 4, 5, 6],
    ...     "Image_ImageQuality_PowerLogLogSlope_DNA": [-1.60, -1.62, -1.58, -1.61, -1.59, -2.9],
    ...     "Image_ImageQuality_PercentMaximal_DNA": [0.0, 0.1, 2.5, 0.0, 0.0, 0.0]})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     flags = image_qc(images)
    >>> [str(w.message) for w in caught]
    ['2 of 6 image(s) flagged by image QC']
    >>> for site, reason in flags.filter(pl.col("Metadata_QC_Outlier")).select(
    ...         "Metadata_Site", "Metadata_QC_Reason").rows():
    ...     print(site, reason)
    3 saturation DNA: 2.50% of pixels at maximum (> 1%)
    6 focus DNA: PowerLogLogSlope robust z = -58.23 (blurred)
    """
    df = lf.lazy().collect()
    image_quality_columns(df)
    out = _image_flags(df, focus_z=focus_z, max_saturated_percent=max_saturated_percent, by=by)
    n_out = int(out[OUTLIER].sum())
    if n_out:
        warn(f"{n_out} of {out.height} image(s) flagged by image QC")
    return out


def image_quality_columns(
    lf: pl.LazyFrame | pl.DataFrame | pl.Schema,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The focus and saturation columns of an image table, as (column, channel) pairs.

    Parameters
    ----------
    lf : polars.LazyFrame, DataFrame or Schema
        The image table or its schema.

    Returns
    -------
    (list of (str, str), list of (str, str))
        The ``..._ImageQuality_PowerLogLogSlope_<channel>`` and the
        ``..._ImageQuality_PercentMaximal_<channel>`` columns with their channel.

    Raises
    ------
    MissingColumnsError
        If there is neither.

    Examples
    --------
    >>> import polars as pl
    >>> image_quality_columns(pl.Schema({"Image_ImageQuality_PowerLogLogSlope_DNA": pl.Float64,
    ...                                  "Image_ImageQuality_PercentMaximal_AGP": pl.Float64}))
    ([('Image_ImageQuality_PowerLogLogSlope_DNA', 'DNA')], [('Image_ImageQuality_PercentMaximal_AGP', 'AGP')])
    """
    schema = schema_of(lf)
    focus = [(c, m.group(1)) for c in schema if (m := _FOCUS.search(c))]
    satur = [(c, m.group(1)) for c in schema if (m := _SATURATION.search(c))]
    if not focus and not satur:
        raise MissingColumnsError(
            "the image table",
            ["*ImageQuality_PowerLogLogSlope_<channel>", "*ImageQuality_PercentMaximal_<channel>"],
            "run CellProfiler's MeasureImageQuality module (or skip image QC)",
        )
    return focus, satur


def _image_flags(
    df: pl.DataFrame, *, focus_z: float, max_saturated_percent: float, by: Sequence[str] | None
) -> pl.DataFrame:
    """Image flags without the summary warning (see :func:`image_qc`)."""
    focus, satur = image_quality_columns(df)
    schema = schema_of(df)
    groups = [c for c in (by or []) if c in schema]
    ids = (
        df.select(pl.struct(groups).rank("dense").alias("g"))["g"].to_numpy()
        if groups
        else np.zeros(df.height, dtype=np.int64)
    )
    reasons: list[list[str]] = [[] for _ in range(df.height)]
    undecided = np.zeros(df.height, dtype=bool)
    for col, channel in focus:
        v = df[col].cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64)
        z = np.full(v.shape, np.nan)
        for g in np.unique(ids):
            mask = ids == g
            z[mask] = robust_z(v[mask])
        undecided |= np.isnan(z)
        for i in np.flatnonzero(np.abs(np.nan_to_num(z, nan=0.0)) > focus_z):
            kind = "blurred" if z[i] < 0 else "unusually sharp/noisy"
            reasons[i].append(f"focus {channel}: PowerLogLogSlope robust z = {z[i]:+.2f} ({kind})")
    for col, channel in satur:
        v = df[col].cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64)
        undecided |= np.isnan(v)
        for i in np.flatnonzero(np.nan_to_num(v, nan=0.0) > max_saturated_percent):
            reasons[i].append(
                f"saturation {channel}: {v[i]:.2f}% of pixels at maximum (> {max_saturated_percent:g}%)"
            )
    _warn_undecided(undecided, "image(s)", "a missing (NaN) image-quality value or focus z-score")
    text = ["; ".join(r) if r else None for r in reasons]
    meta = df.select([c for c in df.columns if is_metadata(c)])
    return meta.with_columns(
        pl.Series(OUTLIER, [t is not None for t in text]), pl.Series(REASON, text, dtype=pl.String)
    )
