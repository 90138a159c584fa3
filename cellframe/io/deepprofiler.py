"""DeepProfiler single-cell features: one ``.npz`` file per site.

DeepProfiler's ``profile`` step writes ``outputs/results/features/<plate>/<well>_<site>.npz``
holding ``features`` (cells x dimensions, float32), ``locations`` (cells x 2:
the x and y centre of each crop) and ``metadata`` (a dict: the site's row of
the index file, and ``Metadata_Model``). Features are named
``<model>_<i>`` as pycytominer's ``load_npz_features`` names them; the
locations become ``Metadata_Location_Center_X`` / ``_Y``. When a file lacks
its metadata, plate, well and site come from its path, and the rest from the
project's index (``inputs/metadata/*.csv``); the model name comes from
``inputs/config/*.json`` (``train.model.name``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellframe._progress import progress
from cellframe.columns import METADATA_PREFIX, OBJECT_NUMBER, PLATE, SITE, WELL
from cellframe.errors import InvalidInputError, MissingColumnsError, UnknownFormatError
from cellframe.io._base import Reader, require_rows
from cellframe.io._normalize import cast_features, normalize_keys, order_columns

_SITE_FILE = re.compile(r"^(?P<well>[A-Za-z]{1,2}\d{1,3})_(?:s)?(?P<site>\d+)$")


def _project_root(path: Path) -> Path | None:
    """The DeepProfiler project folder above ``path`` (it holds ``inputs/``), if any."""
    for parent in [path, *path.parents]:
        if (parent / "inputs").is_dir():
            return parent
    return None


class DeepProfilerNPZ(Reader):
    """Read DeepProfiler ``.npz`` feature files (a file, a features folder or a project).

    Examples
    --------
    A features folder with one site (plate ``P1``, well ``A01``, site 1: from the path):

    >>> import numpy as np
    >>> from pathlib import Path
    >>> Path("features/P1").mkdir(parents=True)
    >>> np.savez("features/P1/A01_1.npz",
    ...          features=np.array([[0.5, 1.5], [2.0, 3.0]], dtype=np.float32),
    ...          locations=np.array([[10.0, 20.0], [30.0, 40.0]]))
    >>> frame = next(DeepProfilerNPZ("features").batches())
    >>> frame.columns
    ['Metadata_Plate', 'Metadata_Well', 'Metadata_Site', 'Metadata_ObjectNumber',
     'Metadata_Location_Center_X', 'Metadata_Location_Center_Y', 'DP_0', 'DP_1']
    >>> frame.row(1)
    ('P1', 'A01', 1, 2, 30.0, 40.0, 2.0, 3.0)
    """

    format = "deepprofiler"

    def __init__(self, path: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.files = [self.path] if self.path.is_file() else sorted(self.path.rglob("*.npz"))
        if not self.files:
            raise UnknownFormatError(f"{self.path} holds no DeepProfiler .npz files")
        root = _project_root(self.path if self.path.is_dir() else self.path.parent)
        self.model = self._config_model(root)
        self._index = self._load_index(root)

    @staticmethod
    def _config_model(root: Path | None) -> str | None:
        if root is None:
            return None
        for cfg in sorted((root / "inputs").rglob("*.json")):
            try:
                name = json.loads(cfg.read_text())["train"]["model"]["name"]
            except (KeyError, TypeError, ValueError):
                continue
            return str(name)
        return None

    @staticmethod
    def _load_index(root: Path | None) -> pl.DataFrame | None:
        if root is None or not (root / "inputs" / "metadata").is_dir():
            return None
        for csv in sorted((root / "inputs" / "metadata").glob("*.csv")):
            df = pl.read_csv(csv, infer_schema=False, glob=False)
            if {PLATE, WELL, SITE} <= set(df.columns):
                return df
        return None

    def _metadata(self, file: Path, npz: Any) -> dict[str, Any]:
        if "metadata" in npz.files:
            meta = npz["metadata"]
            meta = meta.item() if isinstance(meta, np.ndarray) and meta.shape == () else meta
            if not isinstance(meta, dict):
                raise InvalidInputError(f"{file}: 'metadata' is not a dict ({type(meta).__name__})")
            return dict(meta)
        m = _SITE_FILE.match(file.stem)
        if not m:
            raise MissingColumnsError(
                f"{file} (DeepProfiler features)",
                [PLATE, WELL, SITE],
                "the file has no 'metadata' entry and its name is not '<well>_<site>.npz' under "
                "a '<plate>' folder; keep DeepProfiler's layout or pass plate=",
            )
        meta: dict[str, Any] = {
            PLATE: file.parent.name,
            WELL: m.group("well"),
            SITE: m.group("site"),
        }
        if self._index is not None:
            row = self._index.filter(
                (pl.col(PLATE) == meta[PLATE])
                & (pl.col(WELL) == meta[WELL])
                & (pl.col(SITE).cast(pl.String) == str(int(meta[SITE])))
            )
            if row.height:
                meta = {**row.row(0, named=True), **meta}
        return meta

    def _frame(self, file: Path) -> pl.DataFrame:
        with np.load(file, allow_pickle=True) as npz:
            if "features" not in npz.files:
                raise MissingColumnsError(
                    f"{file} (DeepProfiler features)",
                    ["features"],
                    "a DeepProfiler .npz holds 'features', 'locations' and 'metadata'",
                )
            feats = np.asarray(npz["features"], dtype=np.float32)
            if feats.ndim != 2:
                raise InvalidInputError(
                    f"{file}: 'features' must be 2-D (cells x features), not {feats.shape}"
                )
            locs = (
                np.asarray(npz["locations"], dtype=np.float64) if "locations" in npz.files else None
            )
            meta = self._metadata(file, npz)
        n, d = feats.shape
        model = str(meta.get("Metadata_Model") or self.model or "DP")
        data: dict[str, Any] = {}
        for key, value in meta.items():
            name = key if key.startswith(METADATA_PREFIX) else METADATA_PREFIX + key
            data[name] = pl.repeat(
                None if value is None else str(value), n, dtype=pl.String, eager=True
            )
        data[OBJECT_NUMBER] = pl.Series(np.arange(1, n + 1, dtype=np.int64))
        if locs is not None:
            if locs.shape[0] != n:
                raise InvalidInputError(
                    f"{file}: 'locations' has {locs.shape[0]} rows but 'features' has {n}; "
                    "the file is inconsistent, re-run DeepProfiler's profile step"
                )
            data[f"{METADATA_PREFIX}Location_Center_X"] = pl.Series(locs[:, 0])
            data[f"{METADATA_PREFIX}Location_Center_Y"] = pl.Series(locs[:, 1])
        names = [f"{model}_{i}" for i in range(d)]
        features = pl.from_numpy(feats, schema=names)
        df = pl.concat([pl.DataFrame(data), features], how="horizontal")
        df = normalize_keys(df, where=f"{file} (DeepProfiler)", plate=self.plate, well=self.well)
        return cast_features(df, names, where=f"{file} (DeepProfiler)", issues=self.issues)

    def batches(self) -> Iterator[pl.DataFrame]:
        """Yield one site's cells per file, gathered into batches of about ``batch_rows``."""
        buffer: list[pl.DataFrame] = []
        buffered = 0
        total = 0
        for file in progress(self.files, desc="reading .npz", unit="file", enabled=self.progress):
            df = self._frame(file)
            if df.height == 0:
                self.issues.add(f"{file} holds no cells")
                continue
            buffer.append(df)
            buffered += df.height
            limit = self.batch_rows or max(1_000, (64 * 2**20) // (4 * max(df.width, 1)))
            if buffered >= limit:
                total += buffered
                yield order_columns(pl.concat(buffer, how="diagonal_relaxed"))
                buffer, buffered = [], 0
        if buffer:
            total += buffered
            yield order_columns(pl.concat(buffer, how="diagonal_relaxed"))
        require_rows(total, self.path, "cells")


__all__ = ["DeepProfilerNPZ"]
