"""Comparison helpers shared by the profiling tests."""

from __future__ import annotations

import numpy as np

#: Tolerance of float32 results against float64 references (issue 3: <= 1e-4 relative).
RTOL = 1e-4


def assert_close(ours: np.ndarray, ref: np.ndarray, label: str, rtol: float = RTOL) -> float:
    """Assert |ours - ref| <= rtol * max(|ref| of that column, 1e-12) elementwise; print the max abs diff.

    NaN must sit at the same places. Returns the max abs difference.
    """
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    np.testing.assert_array_equal(
        np.isnan(ours), np.isnan(ref), err_msg=f"{label}: NaN positions differ"
    )
    diff = np.abs(np.nan_to_num(ours) - np.nan_to_num(ref))
    scale = np.maximum(np.nanmax(np.abs(ref), axis=0, initial=0.0), 1e-12) if ref.size else ref
    max_diff = float(diff.max()) if diff.size else 0.0
    rel = float((diff / scale).max()) if diff.size else 0.0
    print(f"{label}: max abs diff {max_diff:.3g}, max diff relative to column scale {rel:.3g}")
    assert rel <= rtol, f"{label}: relative difference {rel:.3g} > {rtol:g}"
    return max_diff
