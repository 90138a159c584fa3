"""The layer rule of shared/ARCHITECTURE.md, checked on every import of every module.

Each module of ``cellframe/`` is parsed (``ast``) and every ``import`` of a
cellframe module is an arrow, wherever it stands: at the top, inside a
function, or under ``if TYPE_CHECKING:``. An arrow fails when it runs up the
layer order, or crosses a "never" (``profiles/`` and ``evaluate/`` importing
the store, the partitions or the engine). Arrows that a later step of issue 16
removes are listed in :data:`KNOWN`, each with its reason; an entry that no
longer matches an arrow fails too, so the list can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cellframe"

#: Layer of each top-level module or package of cellframe (ARCHITECTURE.md);
#: 0 holds the helpers every layer uses (errors, column names, Arrow and progress helpers).
LAYERS = {
    "errors": 0,
    "columns": 0,
    "_arrow": 0,
    "_progress": 0,
    "_lazy": 0,
    "store": 1,
    "partitions": 1,
    "io": 2,
    "profiles": 3,
    "evaluate": 3,
    "segment": 4,
    "measure": 4,
    "embed": 4,
    "activity": 4,
    "report": 5,
    "engine": 6,
    "cli": 7,
    "store_cli": 7,
    "namespace": 7,
    "demo": 7,
    "demo_cli": 7,
    "recipe_cli": 7,
    "": 7,  # the package's __init__: the public face
}

#: Pure transforms that must never reach the store or an engine.
PURE = ("profiles", "evaluate")
NEVER = ("store", "partitions", "store_cli", "engine")

_FACE_PIPELINE = (
    "Face module living in profiles/ until the Face step moves it to cellframe/pipeline/"
)

#: (importing module, imported module) -> why the arrow is still there.
KNOWN: dict[tuple[str, str], str] = {
    ("cellframe.profiles.pipeline", "cellframe.store"): _FACE_PIPELINE,
    ("cellframe.profiles.pipeline", "cellframe.engine.fitted"): _FACE_PIPELINE,
    ("cellframe.profiles.plates", "cellframe.store"): _FACE_PIPELINE,
    ("cellframe.profiles.plates", "cellframe.partitions"): _FACE_PIPELINE,
    ("cellframe.profiles.plates", "cellframe.engine.base"): _FACE_PIPELINE,
    ("cellframe.profiles.plates", "cellframe.engine.fitted"): _FACE_PIPELINE,
    ("cellframe.profiles.plates", "cellframe.engine.run"): _FACE_PIPELINE,
    ("cellframe.profiles.aggregate", "cellframe.store"): (
        "aggregate_table, the chunked store-to-store executor, moves into LocalEngine "
        "(the engines-as-objects step)"
    ),
    ("cellframe.profiles.aggregate", "cellframe.partitions"): (
        "aggregate_table reads per-plate row counts; moves into LocalEngine with it"
    ),
    ("cellframe.profiles.normalize", "cellframe.store"): (
        "TYPE_CHECKING only: the thin Normalizer.save/load wrappers over to_frame/from_frame, "
        "kept for callers (demo.py, examples/, docs); they move to cellframe/pipeline/"
    ),
    ("cellframe.profiles.sphere", "cellframe.store"): (
        "TYPE_CHECKING only: the thin Spherizer.save/load wrappers over to_frame/from_frame, "
        "kept for callers (demo.py, examples/, docs); they move to cellframe/pipeline/"
    ),
    ("cellframe.evaluate.crossfit", "cellframe.store"): (
        "activity_from_store reads the store; moves to cellframe/pipeline/ (Face step)"
    ),
    ("cellframe.evaluate.sql", "cellframe.store"): (
        "registers the evaluate SQL macros on a store; moves to cellframe/pipeline/ (Face step)"
    ),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """Every cellframe module imported by ``path`` (anywhere in the file), with its line."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "cellframe" and all(a.name == "__version__" for a in node.names):
                continue  # the version string: metadata, no layer
            if target == "cellframe":  # ``from cellframe import x``: the submodules named
                found += [(f"cellframe.{a.name}", node.lineno) for a in node.names]
            else:
                found.append((target, node.lineno))
    return [(t, line) for t, line in found if t == "cellframe" or t.startswith("cellframe.")]


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def arrows() -> list[tuple[str, str, str, int]]:
    """(importer, imported, file, line) for every import between cellframe modules."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        src = module_name(path)
        for target, line in imports(path):
            if top(target) != top(src):
                out.append((src, target, str(path.relative_to(PACKAGE.parent)), line))
    return out


def is_command_group(module: str) -> bool:
    """A layer's ``cli.py``: a CLI command group, Face (layer 7) wherever it lives.

    The command groups stay in their packages until the Face step moves them
    into ``cellframe/cli/``; by role they are the CLI, so they may import any
    layer and only the CLI may import them.
    """
    return module.endswith(".cli") and module != "cellframe.cli"


def layer(module: str) -> int:
    return LAYERS["cli"] if is_command_group(module) else LAYERS[top(module)]


def violation(src: str, dst: str) -> str | None:
    a, b = top(src), top(dst)
    if a not in LAYERS or b not in LAYERS:
        return f"unknown module {a or b!r}: add it to LAYERS with its ARCHITECTURE.md layer"
    if a in PURE and b in NEVER and not is_command_group(src):
        return f"{a}/ never imports {b}"
    if layer(dst) > layer(src):
        return f"runs up the layers ({src}: {layer(src)} imports {dst}: {layer(dst)})"
    return None


def test_every_arrow_follows_the_layer_order() -> None:
    bad = [
        f"{file}:{line}: {src} -> {dst}: {why}"
        for src, dst, file, line in arrows()
        if (why := violation(src, dst)) and (src, dst) not in KNOWN
    ]
    assert not bad, "imports against shared/ARCHITECTURE.md's layers:\n" + "\n".join(bad)


def test_known_arrows_only_shrink() -> None:
    present = {(src, dst) for src, dst, _, _ in arrows()}
    stale = [f"{src} -> {dst}" for src, dst in KNOWN if (src, dst) not in present]
    assert not stale, "these KNOWN arrows are gone: delete them from the list:\n" + "\n".join(stale)
    allowed = [f"{src} -> {dst}" for src, dst in KNOWN if violation(src, dst) is None]
    assert not allowed, "these KNOWN arrows are not violations: delete them:\n" + "\n".join(allowed)


def test_engine_and_profiles_do_not_know_each_other_both_ways() -> None:
    """The engine runs steps as objects: it imports no step module (no cycle with profiles)."""
    back = [
        f"{file}:{line}: {src} -> {dst}"
        for src, dst, file, line in arrows()
        if top(src) == "engine" and top(dst) in ("profiles", "evaluate")
    ]
    assert not back, "engine/ imports step modules:\n" + "\n".join(back)


@pytest.mark.parametrize(
    ("src", "dst", "expected"),
    [
        ("cellframe.profiles.select", "cellframe.store", "never"),
        ("cellframe.evaluate.metrics", "cellframe.engine.run", "never"),
        ("cellframe.io.readers", "cellframe.profiles.select", "runs up"),
        ("cellframe.engine.run", "cellframe.store", None),  # down: allowed
        ("cellframe.profiles.sphere", "cellframe.evaluate", None),  # same layer: allowed
        ("cellframe.cli", "cellframe.engine", None),  # the Face imports everything
        ("cellframe.profiles.cli", "cellframe.engine.base", None),  # a command group is Face
        ("cellframe.profiles.select", "cellframe.profiles.cli", "runs up"),  # only the CLI uses it
    ],
)
def test_the_rule_itself(src: str, dst: str, expected: str | None) -> None:
    why = violation(src, dst)
    assert (why is None) if expected is None else (expected in (why or ""))


def test_the_walker_sees_imports_inside_functions() -> None:
    mod = PACKAGE / "profiles" / "select.py"
    targets = {t for t, _ in imports(mod)}
    assert "cellframe.profiles._fitted" in targets and "cellframe.errors" in targets
    # an import inside a function body (profiles/select.py imports EmptyInputError there)
    text = mod.read_text(encoding="utf-8")
    assert "        from cellframe.errors import EmptyInputError" in text
    lines = {line for t, line in imports(mod) if t == "cellframe.errors"}
    assert len(lines) >= 2
