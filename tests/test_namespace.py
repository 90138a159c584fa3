"""The ``cf`` namespace on LazyFrame and DataFrame: real signatures, same values as the functions."""

from __future__ import annotations

import dataclasses
import inspect
import pydoc
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import cellframe  # noqa: F401  (registers the namespaces)
from cellframe.columns import CONTROL, PLATE, SITE, TREATMENT, WELL
from cellframe.errors import CellframeError, InvalidInputError
from cellframe.evaluate import PairRules
from cellframe.namespace import (
    FORWARDS,
    DataFrameNamespace,
    LazyFrameNamespace,
    forwarded_function,
)

MOA = "Metadata_MoA"
TRANSFORMS = {
    "aggregate",
    "aggregate_by",
    "consensus",
    "harmony",
    "inverse_normal_transform",
    "normalize",
    "regress_cell_count",
    "select_features",
    "sphere",
    "typical_variation_normalize",
    "well_position_correct",
}


# ------------------------------------------------------------ a synthetic screen
def make_cells(seed: int = 0) -> pl.DataFrame:
    """2 plates x 16 wells x 2 sites x 3 cells; 4 DMSO wells per plate, 6 treatments in 3 MoAs."""
    rng = np.random.default_rng(seed)
    treatments = ["dmso"] * 4 + [f"t{i % 6}" for i in range(12)]
    rows = []
    for plate in ("P1", "P2"):
        for w, trt in enumerate(treatments):
            for site in (1, 2):
                for _ in range(3):
                    rows.append((plate, f"A{w + 1:02d}", site, trt))
    plates, wells, sites, trts = zip(*rows, strict=True)
    trt_index = np.array([-1 if t == "dmso" else int(t[1]) for t in trts])
    n, n_features = len(rows), 6
    # Each treatment shifts the features along its own direction, MoAs share a direction.
    shift = np.zeros((n, n_features))
    treated = trt_index >= 0
    shift[treated, trt_index[treated] // 2] = 3.0
    shift[treated, 3 + trt_index[treated] % 3] += 1.0
    x = rng.normal(size=(n, n_features)) * np.arange(1, n_features + 1) + shift
    moa = [None if t == "dmso" else f"m{int(t[1]) // 2}" for t in trts]
    return pl.DataFrame(
        {
            PLATE: list(plates),
            WELL: list(wells),
            SITE: pl.Series(sites, dtype=pl.Int32),
            TREATMENT: list(trts),
            CONTROL: ["negcon" if t == "dmso" else "" for t in trts],
            MOA: moa,
            **{f"Cells_F{j}": x[:, j].astype(np.float32) for j in range(n_features)},
        }
    )


@pytest.fixture(scope="module")
def cells() -> pl.DataFrame:
    return make_cells()


@pytest.fixture(scope="module")
def wells(cells: pl.DataFrame) -> pl.DataFrame:
    """32 well profiles: median of the cells, metadata carried."""
    from cellframe.profiles import aggregate

    return aggregate(cells.lazy(), "well").collect()


@pytest.fixture(scope="module")
def images() -> pl.DataFrame:
    """12 images with CellProfiler image-quality columns; one blurred, one saturated."""
    slope = [-1.5, -1.6, -1.4, -1.55, -1.45, -1.5, -1.52, -1.48, -1.51, -1.49, -1.5, -4.0]
    saturated = [0.1] * 12
    saturated[3] = 5.0
    return pl.DataFrame(
        {
            PLATE: ["P1"] * 12,
            WELL: [f"A{i + 1:02d}" for i in range(12)],
            SITE: pl.Series([1] * 12, dtype=pl.Int32),
            "Image_ImageQuality_PowerLogLogSlope_DNA": slope,
            "Image_ImageQuality_PercentMaximal_DNA": saturated,
        }
    )


#: Per method: which frame it takes, positional and keyword arguments.
CALLS: dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]] = {
    "aggregate": ("cells", ("well",), {"path": "thesis"}),
    "aggregate_by": ("cells", ([PLATE, WELL, SITE],), {"method": "mean"}),
    "normalize": ("wells", ("mad_robustize",), {"controls": "negcon"}),
    "select_features": ("wells", (["variance_threshold", "correlation_threshold"],), {}),
    "sphere": ("wells", (), {"lam": 1e-2}),
    "inverse_normal_transform": ("wells", ("blom",), {"by": [PLATE]}),
    "well_position_correct": ("wells", (), {"controls": None}),
    "regress_cell_count": ("wells", (), {"controls": None}),
    "typical_variation_normalize": ("wells", (), {"n_components": 3}),
    "consensus": ("wells", ("modz",), {"by": [TREATMENT]}),
    "harmony": ("wells", (PLATE,), {"n_components": 3, "n_clusters": 2}),
    "feature_select": ("wells", ("correlation_threshold",), {"corr_threshold": 0.5}),
    "flag_outlier_wells": ("wells", (), {"n_components": 2, "z_threshold": 2.0}),
    "image_qc": ("images", (), {"focus_z": 3.0}),
    "lambda_sweep": ("wells", ([1e-3, 1e-1],), {"label": MOA}),
    "pca_profiles": ("wells", (3,), {"standardize": True}),
    "strong_treatments": ("wells", (3,), {"controls": "negcon"}),
    "treatment_strength": ("wells", (), {"ddof": 1}),
    "average_precision": (
        "wells",
        (),
        {"rules": PairRules(pos_sameby=[TREATMENT], neg_diffby=[TREATMENT])},
    ),
    "grit": ("wells", (), {"profile_col": TREATMENT, "group_col": MOA, "control_perts": ["dmso"]}),
    "hits_at_top": ("wells", (), {"group": MOA, "top_fraction": 0.1}),
    "percent_replicating": ("wells", (), {"replicate_groups": [TREATMENT]}),
    "phenotypic_activity": ("wells", (), {"same_plate": True}),
    "retrieval_map": ("wells", (), {"label": MOA}),
    "retrieval_metrics": ("wells", (), {"label": MOA, "top_fraction": 0.1}),
    "top_k_similar": ("wells", (), {"k": 3, "id_columns": [PLATE, WELL]}),
}


def assert_same(result: Any, expected: Any, where: str = "result") -> None:
    """Equal values: frames with assert_frame_equal, result objects field by field."""
    if isinstance(expected, pl.LazyFrame) and isinstance(result, pl.LazyFrame):
        result, expected = result.collect(), expected.collect()
    elif isinstance(expected, pl.LazyFrame):  # the DataFrame namespace collects
        expected = expected.collect()
    assert type(result) is type(expected), f"{where}: {type(result)} != {type(expected)}"
    if isinstance(expected, pl.DataFrame):
        assert_frame_equal(result, expected)
    elif dataclasses.is_dataclass(expected):
        for field in dataclasses.fields(expected):
            assert_same(getattr(result, field.name), getattr(expected, field.name), field.name)
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(result, expected)
    elif isinstance(expected, dict):
        assert result.keys() == expected.keys(), where
        for key in expected:
            assert_same(result[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, list | tuple):
        assert len(result) == len(expected), where
        for i, (a, b) in enumerate(zip(result, expected, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert result == expected, f"{where}: {result!r} != {expected!r}"


def call_recording_warnings(func: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[tuple]]:
    """``func(*args, **kwargs)`` collected, and the (class, message) of each warning it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = func(*args, **kwargs)
        collected = result.collect() if isinstance(result, pl.LazyFrame) else result
    return (result, collected), [(w.category, str(w.message)) for w in caught]


def _frame_params(func: Any) -> tuple[inspect.Parameter, list[inspect.Parameter]]:
    frame, *rest = inspect.signature(func).parameters.values()
    return frame, rest


# ------------------------------------------------------------ signatures and docstrings
def test_every_method_has_a_call_in_this_file():
    assert set(CALLS) == set(FORWARDS)


@pytest.mark.parametrize("namespace", [LazyFrameNamespace, DataFrameNamespace])
@pytest.mark.parametrize("name", sorted(FORWARDS))
def test_signature_is_the_function_minus_the_frame(namespace, name):
    func = forwarded_function(name)
    frame, expected = _frame_params(func)
    assert frame.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert "LazyFrame" in str(frame.annotation)

    method = getattr(namespace, name)
    self_param, *params = inspect.signature(method).parameters.values()
    assert self_param.name == "self"
    assert [p.name for p in params] == [p.name for p in expected]
    for got, want in zip(params, expected, strict=True):
        assert got.kind == want.kind, (name, got.name)
        assert got.annotation == want.annotation, (name, got.name)
        if want.default is inspect.Parameter.empty:
            assert got.default is inspect.Parameter.empty, (name, got.name)
        else:
            assert got.default == want.default, (name, got.name)
            assert type(got.default) is type(want.default), (name, got.name)
    # Nothing is hidden behind **kwargs that the function does not have itself.
    func_kwargs = [p for p in expected if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD] == func_kwargs

    returns = inspect.signature(method).return_annotation
    want_returns = inspect.signature(func).return_annotation
    if namespace is DataFrameNamespace and name in TRANSFORMS:
        assert want_returns == "pl.LazyFrame"
        assert returns == "pl.DataFrame"
    else:
        assert returns == want_returns


@pytest.mark.parametrize("namespace", [LazyFrameNamespace, DataFrameNamespace])
@pytest.mark.parametrize("name", sorted(FORWARDS))
def test_docstring_is_the_function_docstring(namespace, name):
    func_doc = inspect.getdoc(forwarded_function(name))
    assert func_doc and "Forward to" not in func_doc
    doc = inspect.getdoc(getattr(namespace, name))
    if namespace is DataFrameNamespace and name in TRANSFORMS:
        assert doc.startswith(func_doc + "\n\n")
        assert "polars.DataFrame`` out" in doc[len(func_doc) :]
    else:
        assert doc == func_doc


def test_bound_methods_and_help_show_the_real_parameters():
    lf = pl.LazyFrame({"f": [1.0]})
    df = pl.DataFrame({"f": [1.0]})
    for frame in (lf, df):
        sig = inspect.signature(frame.cf.sphere)
        assert list(sig.parameters) == [
            "method", "lam", "epsilon", "center", "controls", "features",
        ]  # fmt: skip
        assert sig.parameters["lam"].default == 1e-2
        assert sig.parameters["lam"].kind is inspect.Parameter.KEYWORD_ONLY
    text = pydoc.render_doc(df.cf.normalize, renderer=pydoc.plaintext)
    assert "normalize(method: 'str | StatFn' = 'standardize', *, by:" in text
    assert "min_controls: 'int' = 2" in text and "-> 'pl.DataFrame'" in text
    assert "**kwargs" not in text
    text = pydoc.render_doc(lf.cf.retrieval_metrics, renderer=pydoc.plaintext)
    assert "label: 'str' = 'Metadata_MoA'" in text and "-> 'RetrievalResult'" in text
    # help(df.cf): every method with its parameters, none behind **kwargs it does not have.
    page = pydoc.render_doc(df.cf, renderer=pydoc.plaintext)
    for name in FORWARDS:
        params = list(inspect.signature(forwarded_function(name)).parameters)[1:]
        line = next(x for x in page.splitlines() if x.startswith(f" |  {name}(self"))
        assert all(f"{p}:" in line or f"**{p}" in line for p in params), line
    # Completion: every method is listed before any of them is used.
    assert set(FORWARDS) <= set(dir(pl.LazyFrame().cf))
    assert set(FORWARDS) <= set(dir(pl.DataFrame().cf))


def test_methods_are_not_collected_twice_as_doctests():
    """The examples belong to the function; doctest unwraps the method to it."""
    import doctest

    import cellframe.namespace as ns

    assert DataFrameNamespace.normalize.__name__ == "normalize"  # resolve one method first
    tests = doctest.DocTestFinder().find(ns)
    names = {t.name.rsplit(".", 1)[-1] for t in tests if t.examples}
    assert names == {"LazyFrameNamespace", "DataFrameNamespace"}


def test_importing_cellframe_loads_neither_profiles_nor_evaluate():
    code = (
        "import sys, polars as pl, cellframe\n"
        "pl.LazyFrame().cf; pl.DataFrame().cf\n"
        "print(sorted(m for m in ('cellframe.profiles', 'cellframe.evaluate') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------ values
@pytest.mark.parametrize("name", sorted(CALLS))
def test_lazyframe_method_equals_the_function(name, request):
    frame_name, args, kwargs = CALLS[name]
    df = request.getfixturevalue(frame_name)
    func = forwarded_function(name)
    (result, _), got_warnings = call_recording_warnings(
        getattr(df.lazy().cf, name), *args, **kwargs
    )
    (expected, _), want_warnings = call_recording_warnings(func, df.lazy(), *args, **kwargs)
    if name in TRANSFORMS:
        assert isinstance(result, pl.LazyFrame)
    assert_same(result, expected)
    assert got_warnings == want_warnings  # the same counted warnings, none hidden


@pytest.mark.parametrize("name", sorted(CALLS))
def test_dataframe_method_equals_the_function(name, request):
    frame_name, args, kwargs = CALLS[name]
    df = request.getfixturevalue(frame_name)
    func = forwarded_function(name)
    (result, _), got_warnings = call_recording_warnings(getattr(df.cf, name), *args, **kwargs)
    frame = df if "DataFrame" in str(_frame_params(func)[0].annotation) else df.lazy()
    (expected, _), want_warnings = call_recording_warnings(func, frame, *args, **kwargs)
    if name in TRANSFORMS:
        assert isinstance(result, pl.DataFrame)  # DataFrame in, DataFrame out
        assert isinstance(expected, pl.LazyFrame)
    assert_same(result, expected)
    assert got_warnings == want_warnings
    # The same values as on the LazyFrame.
    (_, lazy_result), _ = call_recording_warnings(getattr(df.lazy().cf, name), *args, **kwargs)
    assert_same(result, lazy_result)


def test_results_depend_on_the_arguments(wells):
    """Controls: the arguments reach the function (a changed one changes the value)."""
    a = wells.cf.sphere(lam=1e-2)
    b = wells.cf.sphere(lam=1.0)
    with pytest.raises(AssertionError):
        assert_same(a, b)
    assert wells.cf.strong_treatments(2).height == 2
    assert wells.cf.strong_treatments(k=4).height == 4
    assert len(wells.cf.feature_select("correlation_threshold", corr_threshold=0.99).dropped) < len(
        wells.cf.feature_select("correlation_threshold", corr_threshold=0.01).dropped
    )


def test_aggregate_by_hand(cells):
    """The well median of the first well, computed by hand, on both frames."""
    first = cells.filter((pl.col(PLATE) == "P1") & (pl.col(WELL) == "A01"))
    expected = float(np.median(first["Cells_F0"].to_numpy()))
    for frame in (cells, cells.lazy()):
        out = frame.cf.aggregate("well")
        out = out.collect() if isinstance(out, pl.LazyFrame) else out
        row = out.filter((pl.col(PLATE) == "P1") & (pl.col(WELL) == "A01"))
        assert row["Cells_F0"].item() == pytest.approx(expected, rel=1e-6)
        assert row["Metadata_Count_Cells"].item() == 6
        assert out.height == 32


def test_normalize_by_hand_and_chain(wells):
    """Standardize against the DMSO wells of each plate, by hand; chained select and sphere."""
    out = wells.cf.normalize("standardize", controls="negcon")
    p1 = wells.filter(pl.col(PLATE) == "P1")
    ctrl = p1.filter(pl.col(CONTROL) == "negcon")["Cells_F2"].to_numpy().astype(np.float64)
    want = (p1["Cells_F2"].to_numpy() - ctrl.mean()) / ctrl.std()
    got = out.filter(pl.col(PLATE) == "P1")["Cells_F2"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)

    lazy = wells.lazy().cf.normalize(controls="negcon").cf.sphere(lam=1e-2)
    eager = wells.cf.normalize(controls="negcon").cf.sphere(lam=1e-2)
    assert isinstance(lazy, pl.LazyFrame) and isinstance(eager, pl.DataFrame)
    assert_frame_equal(lazy.collect(), eager)
    # Sphering centres the controls on zero.
    dmso = eager.filter(pl.col(CONTROL) == "negcon").select(pl.col("^Cells_.*$")).to_numpy()
    assert np.abs(dmso.mean(axis=0)).max() < 1e-4


def test_unusual_but_valid_inputs(wells):
    """A one-plate frame, and a frame without Metadata_Well, go through like the function."""
    one_plate = wells.filter(pl.col(PLATE) == "P2")
    assert_frame_equal(
        one_plate.cf.normalize("robustize", by=()),
        forwarded_function("normalize")(one_plate, "robustize", by=()).collect(),
    )
    no_well = wells.drop(WELL)
    assert no_well.cf.strong_treatments(1)[TREATMENT].to_list() == (
        forwarded_function("strong_treatments")(no_well, 1)[TREATMENT].to_list()
    )


def test_errors_are_the_function_errors(wells):
    """Bad input raises the function's cellframe error, on both frames; bad call a TypeError."""
    no_controls = wells.with_columns(pl.lit("").alias(CONTROL))
    for frame in (no_controls, no_controls.lazy()):
        with pytest.raises(CellframeError) as namespace_error:
            out = frame.cf.normalize(controls="negcon")
            if isinstance(out, pl.LazyFrame):
                out.collect()
        with pytest.raises(CellframeError) as function_error:
            forwarded_function("normalize")(frame, controls="negcon").collect()
        assert type(namespace_error.value) is type(function_error.value)
        assert str(namespace_error.value) == str(function_error.value)
    with pytest.raises(InvalidInputError, match="k=0"):
        wells.cf.strong_treatments(0)
    with pytest.raises(TypeError, match="lamda"):
        wells.cf.sphere(lamda=1e-2)


def test_nelisa_namespace_equals_function(shared_data):
    """Real data (moved from tests/profiles/test_normalize.py): nELISA, both frames."""
    from cellframe.profiles import normalize

    path = shared_data / "profiles-nelisa" / "nelisa_profiles.parquet"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    nelisa = pl.read_parquet(path)
    controls = "Metadata_control_type = 'negcon'"  # a SQL row filter, as in test_normalize
    expected = normalize(nelisa, "robustize", controls=controls).collect()
    assert_frame_equal(
        nelisa.lazy().cf.normalize("robustize", controls=controls).collect(), expected
    )
    assert_frame_equal(nelisa.cf.normalize("robustize", controls=controls), expected)
