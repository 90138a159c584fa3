"""Every Python snippet of the user guide (docs/*.md) runs as written.

Snippets of one page run in order in one namespace, in a temporary folder, as a
reader would paste them. A block fenced as ```python no-run is shown only (for
work that takes minutes); everything else must run and pass its asserts.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if p.name != "DEVELOPING.md")
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def snippets(page: Path) -> list[str]:
    return [code for info, code in FENCE.findall(page.read_text()) if "no-run" not in info]


def test_every_layer_has_a_page() -> None:
    names = {p.stem for p in PAGES}
    assert {"store", "engine", "report"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_snippets_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = snippets(page)
    if not code:
        pytest.skip(f"{page.name} has no runnable snippet")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(code):
        try:
            exec(compile(block, f"{page.name}[snippet {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"{page.name}, snippet {i} failed: {exc!r}\n{block}") from exc
