"""Exceptions raised by cellframe.

Every message names the file, table or column at fault and says what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class CellframeError(Exception):
    """Base class of every cellframe error."""


class MissingColumnsError(CellframeError, ValueError):
    """Required columns are absent from a table or file."""

    def __init__(self, where: str, missing: Sequence[str], hint: str = "") -> None:
        self.where = where
        self.missing = list(missing)
        cols = ", ".join(repr(c) for c in self.missing)
        msg = f"{where} lacks required column(s) {cols}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class InvalidInputError(CellframeError, ValueError):
    """Input data or a parameter is malformed (wrong type, shape or value)."""


class EmptyInputError(InvalidInputError):
    """A file, plate or table that must hold rows holds none."""


class UnknownFormatError(InvalidInputError):
    """A source is not in any format cellframe can read."""


class SchemaMismatchError(InvalidInputError):
    """Rows to store do not match the columns of the table already stored."""


class StoreLockedError(CellframeError, OSError):
    """The DuckDB file is held by another process."""


class TableNotFoundError(CellframeError, KeyError):
    """A table asked for is not in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class KeyConflictError(InvalidInputError):
    """Rows to append carry keys (plate, well, site) the store already holds.

    Raised by ``mode="append"`` writes instead of storing the rows twice; the
    store is left unchanged.
    """


#: The fix every append refusal (:class:`KeyConflictError`) names.
REPLACE_IMAGES_HINT = (
    "Use mode='replace-images' (command line: --mode replace-images) to replace them, "
    "or leave them out"
)


def key_example(row: Mapping[str, Any]) -> str:
    """One key of a refusal's rows as ``column=value, ...`` (the example a message shows)."""
    return ", ".join(f"{k}={v!r}" for k, v in row.items())


class DependentNullWarning(UserWarning):
    """A significance test's null reuses the control wells a correction was fitted on."""


class NaNExcludedWarning(UserWarning):
    """NaN values were left out of a count, threshold or ranking (the message gives the count)."""


class DuplicateWellsError(InvalidInputError):
    """A platemap lists one (plate,) well on several rows that disagree."""


class CaseDuplicateColumnsError(InvalidInputError):
    """A file holds columns whose names differ only in case and whose values differ."""


class FeatureMismatchError(SchemaMismatchError):
    """Files of one source hold different feature columns."""


class TooFewControlsError(InvalidInputError):
    """A plate (or group) has too few rows or control rows to estimate a spread."""


class InvalidImageError(InvalidInputError):
    """An image cannot be segmented or embedded as given (NaN pixels, too small, wrong channels)."""


class TruncatedFileError(InvalidInputError):
    """A row holds fewer fields than the header, or a file's compressed stream ends early."""


class DuplicateColumnsError(InvalidInputError):
    """A file's header names the same column more than once."""


class DuplicateKeysError(InvalidInputError):
    """Two rows of one table carry the same key (ImageNumber, ObjectNumber)."""


class DanglingReferenceError(InvalidInputError):
    """A ``Parent_*`` column names an object that does not exist in its image."""


class IncompleteExportError(InvalidInputError):
    """Tables of one export disagree: a compartment lacks the objects the others have."""


class CorruptFileError(InvalidInputError):
    """A file fails its format's integrity check (a damaged SQLite database)."""


class InvalidChoiceError(InvalidInputError):
    """A config key or command-line option names a value outside its registry (message lists the allowed ones)."""


class TableExistsError(InvalidInputError):
    """A command would overwrite an existing store table or view without being told to (``--replace``)."""


class ConfigNotFoundError(CellframeError, FileNotFoundError):
    """A config file the user named (``--config``) does not exist or is a folder."""


class NullKeyError(InvalidInputError):
    """Rows to store hold nulls in a column the table declares NOT NULL (a key or location)."""


class IlluminationWarning(UserWarning):
    """An illumination function had pixels at or below zero that were raised (count in the message)."""


class NoObjectsWarning(UserWarning):
    """A site yielded no objects (no nuclei above the threshold, or all filtered out)."""


class BlankImageError(EmptyInputError, InvalidImageError):
    """An image that objects are identified on is constant (a blank or missing channel)."""


class SkippedLabelsWarning(UserWarning):
    """A batch-panel metric left out labels it is undefined for (one batch, too few rows); the message counts them."""


class PrecisionLossWarning(UserWarning):
    """Values were rounded to fit a narrower type (float64 features in a float32 matrix); the message gives the count."""


class UnmatchedObjectsWarning(UserWarning):
    """Objects of one compartment without their partner in another (a nucleus of no cell, ...), with counts."""


class UndefinedMeasurementWarning(UserWarning):
    """Measurements that are undefined for some objects (NaN: the texture of a one-pixel object, ...), with counts."""


class HarmonyNotConvergedWarning(UserWarning):
    """Harmony stopped at ``max_iter`` before its objective settled (the message gives the change)."""


class UnknownRecipeTokenError(InvalidChoiceError):
    """A recipe string or TOML recipe names a step outside the recipe registry (message lists the allowed ones)."""


class SizeRangeWarning(UserWarning):
    """Most objects found were dropped for lying outside the diameter range (counts and the option to change in the message)."""


class IlluminationSitesWarning(IlluminationWarning):
    """An illumination function was fitted from too few sites to be flat where cells are (count in the message)."""


class InputNotFoundError(CellframeError, FileNotFoundError):
    """An input file or folder the user named (images, a sites CSV) does not exist."""


class DescriptorWorkerError(CellframeError, RuntimeError):
    """A worker process computing RDKit descriptors died (killed for memory, say); nothing was returned."""


class DescriptorCacheError(CellframeError, ValueError):
    """A descriptor cache file is not one cellframe wrote (not Parquet, no ``smiles`` key, a compound twice); it is left untouched."""


class SavedModelError(InvalidInputError):
    """A saved activity model directory is missing a file, corrupted, or not a cellframe model (the message names the file and how to save it again)."""


class SavedModelVersionError(SavedModelError):
    """A saved activity model was written by another cellframe or model-format version (retrain it, or use that version)."""


class IncompleteSiteError(InvalidInputError):
    """A site of a one-file-per-channel layout lacks the file of a channel its other sites have."""
