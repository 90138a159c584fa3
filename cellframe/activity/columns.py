"""Column names of the activity tables (DOMAIN.md §6).

Kept in the activity package so the shared ``cellframe/columns.py`` stays
untouched; every activity module uses these constants, never string literals.
"""

from __future__ import annotations

#: Compound identifier (a Broad id, an index, or the SMILES itself).
COMPOUND = "Metadata_Compound"
#: SMILES string of a compound.
SMILES = "Metadata_SMILES"
#: Assay identifier.
ASSAY = "Metadata_Assay"
#: Cross-validation fold (0-based) of a compound.
FOLD = "Metadata_Fold"
#: Modality of a predictor: ``CS`` (chemical structure), ``MO`` (morphology),
#: ``GE`` (gene expression) or a fusion such as ``late_CS+MO``.
MODALITY = "Metadata_Modality"
#: Bemis-Murcko scaffold SMILES.
SCAFFOLD = "Metadata_Scaffold"

#: Observed readout: 1 hit, 0 no hit (missing readouts have no row).
READOUT = "readout"
#: Predicted probability of a hit.
PROBABILITY = "probability"

__all__ = [
    "ASSAY",
    "COMPOUND",
    "FOLD",
    "MODALITY",
    "PROBABILITY",
    "READOUT",
    "SCAFFOLD",
    "SMILES",
]
