"""The 60-compound screen of the activity command-line tests (5 scaffolds x 12 substituents)."""

from __future__ import annotations

import numpy as np
import polars as pl

#: Ring systems: each is one Bemis-Murcko scaffold of the screen.
CORES = ["c1ccccc1", "c1ccncc1", "C1CCCCC1", "c1ccc2ccccc2c1", "C1CCNCC1"]
#: Substituents; the assays follow them, so a model can learn them across scaffolds.
TAILS = ["O", "N", "OC(=O)", "Cl", "CC", "CO", "F", "N#C", "S", "O=CN", "OCC", "Br"]


def scaffold_screen(*, split: bool = True, validation: str = "validation") -> pl.DataFrame:
    """The screen: ``ID``, ``smiles``, a ``set`` column (when ``split``) and assays ``A``, ``B``.

    ``A`` is 1 for every other substituent, ``B`` for the first four; ``set``
    puts every fifth compound (from the second) in ``validation`` (spelled as
    given) and every fifth from the fourth in ``test``, the rest in ``train``.
    """
    smiles = [f"{t}{c}" for c in CORES for t in TAILS]
    n = len(smiles)
    tail = np.tile(np.arange(len(TAILS)), len(CORES))
    columns: dict = {"ID": [f"T{i:03d}" for i in range(n)], "smiles": smiles}
    if split:
        part = np.array(["train"] * n, dtype=object)
        part[np.arange(n) % 5 == 1] = validation
        part[np.arange(n) % 5 == 3] = "test"
        columns["set"] = part.tolist()
    columns["A"] = (tail % 2 == 0).astype(int)
    columns["B"] = (tail < 4).astype(int)
    return pl.DataFrame(columns)
