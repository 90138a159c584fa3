"""The bundled methods table and its filters."""

from __future__ import annotations

import pytest

from cellframe.segment.advise import advise, methods_table


def test_table_shape_and_cellframe_entries():
    t = methods_table()
    assert t.height >= 12 and t["method"].n_unique() == t.height
    implemented = set(t.filter(t["cellframe"] != "")["cellframe"])
    import cellframe.segment as seg

    for dotted in implemented:  # every claimed implementation exists
        assert hasattr(seg, dotted.rsplit(".", 1)[1]), dotted


def test_filters():
    fl3d = advise(modality="fluorescence", dim="3d")
    assert fl3d.height > 0
    assert all(
        "3d" in d and "fluorescence" in m
        for d, m in zip(fl3d["dims"], fl3d["modalities"], strict=True)
    )
    he = advise(modality="he", challenges=["touching", "overlapping"])
    top = he.row(0, named=True)
    assert top["challenges_handled"] == 2
    assert he["challenges_handled"].to_list() == sorted(
        he["challenges_handled"].to_list(), reverse=True
    )
    tut = advise(need_tutorial=True)
    assert tut["tutorial"].all() and tut.height < methods_table().height
    with pytest.raises(ValueError, match="unknown challenge"):
        advise(challenges=["blurry"])
