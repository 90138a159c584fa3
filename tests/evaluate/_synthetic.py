"""Synthetic screens shared by the evaluation tests."""

from __future__ import annotations

import numpy as np
import polars as pl


def synthetic_screen(
    n_treatments: int = 12,
    replicates: int = 4,
    n_controls: int = 8,
    n_features: int = 16,
    signal: float = 1.0,
    seed: int = 0,
    moas: tuple[str, ...] = ("a", "b", "c", "a|b"),
    plates: int = 2,
) -> pl.DataFrame:
    """Wells of treatments (replicates around a treatment centre) plus DMSO controls."""
    rng = np.random.default_rng(seed)
    rows = []
    feats = []
    for t in range(n_treatments):
        centre = rng.normal(size=n_features) * signal
        for r in range(replicates):
            rows.append((f"T{t:03d}", moas[t % len(moas)], "", f"P{r % plates}", f"A{t:02d}{r}"))
            feats.append(centre + rng.normal(size=n_features))
    for c in range(n_controls):
        rows.append(("DMSO", None, "negcon", f"P{c % plates}", f"C{c:03d}"))
        feats.append(rng.normal(size=n_features))
    meta = pl.DataFrame(
        rows,
        schema=[
            "Metadata_Treatment",
            "Metadata_MoA",
            "Metadata_Control",
            "Metadata_Plate",
            "Metadata_Well",
        ],
        orient="row",
    )
    x = pl.DataFrame(
        np.asarray(feats, dtype=np.float32), schema=[f"f{i:02d}" for i in range(n_features)]
    )
    return meta.hstack(x)
