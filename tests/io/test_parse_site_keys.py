"""parse_site_keys pads row-letter/column-number wells and keeps other namings as written."""

from __future__ import annotations

import pytest

from cellframe.io.images import parse_site_keys

OPERA = r"(?P<plate>[^-]+)-(?P<well>r\d+c\d+)f(?P<site>\d+)"


@pytest.mark.parametrize(
    ("name", "pattern", "expected"),
    [
        ("BR1_G1_s2.tif", None, {"plate": "BR1", "well": "G01", "site": 2}),
        ("BR1_af48_s1.tif", None, {"plate": "BR1", "well": "AF48", "site": 1}),
        (
            "P1-B7f2.tif",
            r"(?P<plate>[^-]+)-(?P<well>[A-Z]\d+)f(?P<site>\d+)",
            {"plate": "P1", "well": "B07", "site": 2},
        ),
        # A custom pattern whose wells are not letter+number: kept, not mangled
        # (was 'RC102': the letters and the digits of 'r01c02' glued together).
        ("P1-r01c02f03.tif", OPERA, {"plate": "P1", "well": "r01c02", "site": 3}),
        # A well group with no digits used to raise a bare ValueError (int("")).
        (
            "P1-ctrl-4.tif",
            r"(?P<plate>P\d)-(?P<well>[a-z]+)-(?P<site>\d)",
            {"plate": "P1", "well": "ctrl", "site": 4},
        ),
    ],
)
def test_parse_site_keys_wells(name: str, pattern: str | None, expected: dict) -> None:
    assert parse_site_keys(name, pattern) == expected


def test_parse_site_keys_no_match() -> None:
    assert parse_site_keys("notes.txt") is None
    assert parse_site_keys("P1-r01c02f03.tif") is None
