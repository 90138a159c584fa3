"""Every Python snippet of the user guide (docs/*.md) runs as written.

Snippets of one page run in order in one namespace, in a temporary working
folder beside a link to ``../shared`` (so ``../shared/data/...`` paths work as
they do from the repository root), as a reader would paste them. A block
fenced as ```python no-run is shown only (reference listings, or work that
takes minutes); every page has runnable blocks, and they must run and pass
their asserts.
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
    assert code, f"{page.name} has no runnable snippet"
    shared = DOCS.parents[1] / "shared"
    if "../shared" in "".join(code) and not shared.is_dir():
        pytest.skip(f"{page.name} reads ../shared/data, which is absent")
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(code):
        try:
            exec(compile(block, f"{page.name}[snippet {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"{page.name}, snippet {i} failed: {exc!r}\n{block}") from exc
