"""Shared types of the execution engines."""

from __future__ import annotations

from dataclasses import dataclass, field

from cellframe.errors import CellframeError

__all__ = ["ENGINES", "EngineUnavailableError", "MapReport"]

#: Engine names accepted by ``--engine`` and ``engine=``.
ENGINES = ("local", "ray")


class EngineUnavailableError(CellframeError, RuntimeError):
    """The requested engine cannot run (Ray missing, cluster unreachable)."""


@dataclass
class MapReport:
    """What a per-plate map wrote.

    Attributes
    ----------
    table : str
        Destination table.
    engine : str
        ``"local"`` or ``"ray"``.
    computed : list of str
        Plates computed by this run.
    skipped : list of str
        Plates already complete and left as they were (resume).
    rows : int
        Rows written by this run.
    """

    table: str
    engine: str
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rows: int = 0
