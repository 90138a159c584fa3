"""Progress bars shared by every long-running step (tqdm; off with ``progress=False``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr when ``enabled``.

    Parameters
    ----------
    iterable : iterable
        What to iterate over.
    total : int, optional
        Number of items, when ``len(iterable)`` is unknown.
    desc : str
        Label shown before the bar.
    unit : str
        Name of one item (``"plate"``, ``"cell"``, ...).
    enabled : bool, default True
        ``False`` iterates silently.
    """
    if not enabled:
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
