"""Column names shared with DeepProfiler output (as pycytominer reads it).

DeepProfiler's pre-trained mode runs each channel through the network and
concatenates the features channel after channel, in its config's channel
order; pycytominer names them ``<Metadata_Model>_<j>``. cellframe names the
same values ``<model>_<channel>_<i>`` with ``j = channel_index * n + i``.
"""

from __future__ import annotations

from collections.abc import Sequence

from cellframe.errors import InvalidInputError

__all__ = ["deepprofiler_feature_names", "to_deepprofiler_names"]


def deepprofiler_feature_names(prefix: str, n_channels: int, n_per_channel: int) -> list[str]:
    """pycytominer's names of DeepProfiler features: ``<prefix>_0`` ... in storage order.

    Examples
    --------
    >>> deepprofiler_feature_names("efficientnet", 2, 2)
    ['efficientnet_0', 'efficientnet_1', 'efficientnet_2', 'efficientnet_3']
    """
    return [f"{prefix}_{j}" for j in range(n_channels * n_per_channel)]


def to_deepprofiler_names(
    columns: Sequence[str], model: str, channels: Sequence[str], *, prefix: str | None = None
) -> dict[str, str]:
    """Map cellframe feature names ``<model>_<channel>_<i>`` to DeepProfiler's ``<prefix>_<j>``.

    Parameters
    ----------
    columns : sequence of str
        Feature columns of a cellframe per-channel embedding.
    model : str
        Their model prefix.
    channels : sequence of str
        Channel order of the DeepProfiler config (``dataset.images.channels``).
    prefix : str, optional
        DeepProfiler's ``Metadata_Model`` (default ``model``).

    Returns
    -------
    dict
        Old name -> new name, for ``frame.rename(...)``.

    Raises
    ------
    ValueError
        If a column is not ``<model>_<channel>_<i>`` for a listed channel, or
        the channels have different feature counts.

    Examples
    --------
    >>> to_deepprofiler_names(["m_DNA_0", "m_DNA_1", "m_ER_0", "m_ER_1"], "m", ["DNA", "ER"], prefix="dp")
    {'m_DNA_0': 'dp_0', 'm_DNA_1': 'dp_1', 'm_ER_0': 'dp_2', 'm_ER_1': 'dp_3'}
    """
    prefix = prefix or model
    order = {c: k for k, c in enumerate(channels)}
    parsed: list[tuple[str, int, int]] = []
    counts: dict[str, int] = {}
    for col in columns:
        head = f"{model}_"
        rest = col[len(head) :] if col.startswith(head) else None
        channel, _, index = (rest or "").rpartition("_")
        if rest is None or channel not in order or not index.isdigit():
            raise InvalidInputError(
                f"column {col!r} is not {model}_<channel>_<i> for channels {list(channels)}"
            )
        parsed.append((col, order[channel], int(index)))
        counts[channel] = counts.get(channel, 0) + 1
    if len(set(counts.values())) > 1:
        raise InvalidInputError(f"channels have different numbers of features: {counts}")
    n = next(iter(counts.values()), 0)
    return {col: f"{prefix}_{c * n + i}" for col, c, i in parsed}
