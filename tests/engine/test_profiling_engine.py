"""Profiling steps on Ray equal the local engine's output to 1e-5 on a multi-plate screen."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import CONTROL, OBJECT_NUMBER, PLATE, SITE, WELL
from cellframe.engine.fitted import apply_plates, fit_plates
from cellframe.pipeline import Aggregation, run_step
from cellframe.pipeline.plates import aggregate_plates
from cellframe.profiles.normalize import Normalizer
from cellframe.profiles.sphere import Spherizer
from cellframe.store import Store

N_FEATURES = 8


def cells(n_plates: int = 4, n_wells: int = 8, n_sites: int = 2, n_cells: int = 15) -> pl.DataFrame:
    rng = np.random.default_rng(42)
    rows = []
    for p in range(n_plates):
        for w in range(n_wells):
            for s in range(n_sites):
                x = rng.normal(loc=p * 0.5 + w * 0.1, scale=1 + p, size=(n_cells, N_FEATURES))
                frame = pl.DataFrame(
                    {f"f{j}": x[:, j].astype(np.float32) for j in range(N_FEATURES)}
                )
                rows.append(
                    frame.with_columns(
                        pl.lit(f"P{p}").alias(PLATE),
                        pl.lit(f"A{w + 1:02d}").alias(WELL),
                        pl.lit(s + 1, dtype=pl.Int32).alias(SITE),
                        pl.int_range(1, n_cells + 1, dtype=pl.Int64).alias(OBJECT_NUMBER),
                        pl.lit("negcon" if w < 4 else None, dtype=pl.String).alias(CONTROL),
                    )
                )
    return pl.concat(rows).select(
        PLATE, WELL, SITE, OBJECT_NUMBER, CONTROL, pl.selectors.starts_with("f")
    )


@pytest.fixture(scope="module")
def screen(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(Path(tmp_path_factory.mktemp("screen")) / "s.duckdb")
    store.write("cells", cells())
    yield store
    store.close()


def same(store: Store, a: str, b: str, keys=(PLATE, WELL)) -> int:
    """Assert two stored tables are equal to 1e-5; return their row count."""
    left = store.read(a).sort(*keys)
    right = store.read(b).sort(*keys).select(left.columns)
    assert left.height == right.height > 0
    assert_frame_equal(left, right, check_exact=False, rel_tol=1e-5, abs_tol=1e-5)
    return left.height


def test_aggregate_on_ray_equals_local(screen: Store, ray_local) -> None:
    run_step(screen, Aggregation(), "cells", "wells", progress=False)
    report = aggregate_plates(screen, "cells", "wells_ray", engine="ray", progress=False)
    assert sorted(report.computed) == ["P0", "P1", "P2", "P3"]
    same(screen, "wells", "wells_ray")
    run_step(screen, Aggregation("image"), "cells", "images", progress=False)
    aggregate_plates(screen, "cells", "images_ray", level="image", engine="ray", progress=False)
    same(screen, "images", "images_ray", keys=(PLATE, WELL, SITE))


@pytest.mark.parametrize(
    ("method", "by"), [("mad_robustize", None), ("standardize", ()), ("robustize", ())]
)
def test_normalize_on_ray_equals_local(screen: Store, ray_local, method: str, by) -> None:
    if not screen.has_table("wells"):
        run_step(screen, Aggregation(), "cells", "wells", progress=False)
    tag = f"{method}_{'plate' if by is None else 'all'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_step(
            screen, Normalizer(method, by=(PLATE,) if by is None else by), "wells", f"n_{tag}",
            progress=False,
        )  # fmt: skip
        normalizer = Normalizer(method, by=(PLATE,) if by is None else by)
        if by is None:  # per plate: each plate fitted on its own rows
            apply_plates(
                screen, "wells", f"n_{tag}_ray", normalizer, name="normalize",
                fit_each_plate=True, engine="ray", progress=False,
            )  # fmt: skip
        else:  # one fit from every plate's merged statistics
            fitted = fit_plates(screen, "wells", normalizer, engine="ray", progress=False)
            apply_plates(
                screen, "wells", f"n_{tag}_ray", fitted, name="normalize", engine="ray",
                progress=False,
            )  # fmt: skip
    assert same(screen, f"n_{tag}", f"n_{tag}_ray") == screen.read("wells").height


def test_sphering_fit_from_sufficient_statistics(screen: Store, ray_local) -> None:
    if not screen.has_table("wells"):
        run_step(screen, Aggregation(), "cells", "wells", progress=False)
    run_step(screen, Spherizer(lam=1e-2), "wells", "sphered", progress=False)
    fitted = fit_plates(screen, "wells", Spherizer(lam=1e-2), engine="ray", progress=False)
    report = apply_plates(
        screen, "wells", "sphered_ray", fitted, name="sphere", engine="ray", progress=False
    )
    assert report.rows == screen.read("wells").height
    same(screen, "sphered", "sphered_ray")
    # the fit itself against float64 NumPy on all control wells at once
    x = screen.read("wells").filter(pl.col(CONTROL) == "negcon").select(fitted.features_).to_numpy()
    x = x.astype(np.float64)
    mu = x.mean(axis=0)
    cov = (x - mu).T @ (x - mu) / len(x)
    e, u = np.linalg.eigh(cov)
    w = u @ np.diag(1 / np.sqrt(e + 1e-2)) @ u.T
    np.testing.assert_allclose(fitted.W_, w, atol=1e-8)
    np.testing.assert_allclose(fitted.mean_, mu, atol=1e-10)


def test_treatment_level_is_refused_per_plate(screen: Store) -> None:
    from cellframe.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="treatments with the local engine"):
        aggregate_plates(screen, "cells", "t", level="treatment", engine="local", progress=False)


def test_cli_and_config_run_on_ray(screen: Store, ray_local, tmp_path: Path) -> None:
    from cellframe.cli import main
    from cellframe.pipeline import run_pipeline

    path = screen.path
    config = {
        "input": "cells",
        "engine": "ray",
        "step": [
            {"run": "aggregate", "output": "cfg_wells"},
            {"run": "normalize", "method": "mad_robustize", "output": "cfg_norm"},
        ],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reports = run_pipeline(screen, config, progress=False)
    assert "ray" in reports[0].note and "ray" in reports[1].note
    assert screen.tables().filter(pl.col("table") == "cfg_norm")["kind"][0] == "parquet"
    screen.close()
    try:
        rc = main(["aggregate", "--store", path, "--input", "cells", "--output", "cli_wells",
                   "--engine", "ray", "-q"])  # fmt: skip
        assert rc == 0
        rc = main(["aggregate", "--store", path, "--input", "cells", "--output", "cli_wells",
                   "--engine", "ray", "--address", "127.0.0.1:9", "-q"])  # fmt: skip
        assert rc == 2
    finally:
        screen.__init__(path)  # reopen for the module fixture's other tests
    same(screen, "cfg_wells", "cli_wells")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_whole_chain_on_ray_equals_local(screen: Store, ray_local) -> None:
    """aggregate -> normalize -> select -> sphere -> qc from one config, both engines."""
    from cellframe.pipeline import run_pipeline

    steps = [
        {"run": "aggregate", "output": "ch_wells"},
        {"run": "normalize", "method": "standardize", "output": "ch_norm"},
        {"run": "select", "operations": ["variance_threshold", "correlation_threshold"],
         "corr_threshold": 0.2, "output": "ch_sel"},
        {"run": "sphere", "lam": 0.1, "output": "ch_sph"},
        {"run": "qc", "output": "ch_qc"},
    ]  # fmt: skip
    run_pipeline(screen, {"input": "cells", "step": steps}, progress=False)
    ray_steps = [{**s, "output": s["output"] + "_ray"} for s in steps]
    ray = run_pipeline(
        screen, {"input": "cells", "engine": "ray", "step": ray_steps}, progress=False
    )
    assert all("ray" in r.note for r in ray)
    dropped = screen.read("ch_sel_dropped")
    assert dropped.height > 0  # r > 0.2 between plate-shifted features: not vacuous
    assert_frame_equal(screen.read("ch_sel_ray_dropped"), dropped)
    for table in ("ch_wells", "ch_norm", "ch_sel", "ch_sph"):
        same(screen, table, f"{table}_ray")
    a = screen.read("ch_qc").sort(PLATE, WELL)
    b = screen.read("ch_qc_ray").sort(PLATE, WELL).select(a.columns)
    assert_frame_equal(a, b, check_exact=False, rel_tol=1e-5, abs_tol=1e-5)


def test_ray_into_an_existing_native_table_is_refused_before_any_work(
    tmp_path: Path, ray_local, capsys
) -> None:
    from cellframe.cli import main
    from cellframe.errors import TableExistsError

    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        store.write("cells", cells(n_plates=2, n_wells=2, n_sites=1, n_cells=3))
        run_step(
            store, Aggregation(), "cells", "wells", progress=False
        )  # local engine: a native table
        local = store.read("wells")
        parts = store.parts_dir / "wells"
    before = path.read_bytes()
    argv = ["aggregate", "--store", str(path), "--input", "cells", "--output", "wells"]
    assert main([*argv, "--engine", "ray", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Catalog" not in err and "Traceback" not in err
    assert "'wells' exists in" in err and "as a native DuckDB table" in err
    assert "--output another name" in err and "--engine local" in err
    assert path.read_bytes() == before
    assert not parts.exists() and parts.parent.name == "s.parts"
    with Store(path) as store:
        with pytest.raises(TableExistsError, match="as a native DuckDB table"):
            aggregate_plates(store, "cells", "wells", engine="ray", progress=False)
        assert_frame_equal(store.read("wells"), local)
    # Controls: the local engine replaces its own native table, and Ray writes a
    # new name (and re-runs into its own partitioned view) with the same rows.
    assert main([*argv, "-q"]) == 0
    assert main([*argv[:-1], "wells_ray", "--engine", "ray", "-q"]) == 0
    assert main([*argv[:-1], "wells_ray", "--engine", "ray", "--force", "-q"]) == 0
    with Store(path) as store:
        assert_frame_equal(store.read("wells"), local)
        assert same(store, "wells", "wells_ray") == local.height == 4
