"""The layer rule: imports only look down (ground <- stages <- application).

Every project module is parsed (not imported) and each ``import``/``from`` naming a project module is checked
against the table below; an upward or sideways edge fails with the file, line and both layers.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# folder (as installed) -> layer
FOLDERS = {
    "mmmos/core": "ground",
    "cache_store": "cache_store",
    "extract": "extract",
    "heads": "heads",
    "losses": "losses",
    "mmmos/sweep": "sweep",
    "mmmos/ensemble": "ensemble",
    "mmmos/app": "app",
    "mmmos/testing": "app",
    "bench": "app",
}
# module prefix (as imported) -> layer
MODULES = {
    "mmmos.core": "ground",
    "mmmos.cache_store": "cache_store",
    "mmmos.extract": "extract",
    "mmmos.heads": "heads",
    "mmmos.losses": "losses",
    "mmmos.sweep": "sweep",
    "mmmos.ensemble": "ensemble",
    "mmmos.app": "app",
    "mmmos.testing": "app",
    "bench": "app",
}
# layer -> the layers it may import (besides itself)
ALLOWED = {
    "ground": set(),
    "cache_store": {"ground"},
    "extract": {"ground", "cache_store"},
    "heads": {"ground"},
    "losses": {"ground"},
    "sweep": {"ground", "cache_store", "heads", "losses"},
    "ensemble": {"ground"},
    "app": {"ground", "cache_store", "extract", "heads", "losses", "sweep", "ensemble"},
}
# the bare package names of the stages; importing them un-namespaced is forbidden everywhere
BARE = {"extract", "cache_store", "heads", "losses", "sweep", "select_ensemble", "features"}


def layer_of_module(name: str) -> str | None:
    for prefix, layer in sorted(MODULES.items(), key=lambda kv: -len(kv[0])):
        if name == prefix or name.startswith(prefix + "."):
            return layer
    return None


def package_of(path: Path) -> str:
    """The dotted package a file belongs to, as installed (``extract/runner.py`` -> ``mmmos.extract``)."""
    rel = path.relative_to(ROOT).parent.as_posix()
    for folder, pkg in (("cache_store", "mmmos.cache_store"), ("extract", "mmmos.extract"), ("heads", "mmmos.heads"),
                        ("losses", "mmmos.losses")):
        if rel == folder or rel.startswith(folder + "/"):
            return pkg + rel[len(folder):].replace("/", ".")
    return rel.replace("/", ".")


def imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in ``path``; relative imports are resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = package_of(path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            if mod == "mmmos":  # ``from mmmos import sweep`` names a sub-package
                out += [(node.lineno, f"mmmos.{a.name}") for a in node.names]
    return out


def violations(files: list[Path]) -> list[str]:
    bad = []
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        layer = next((lay for folder, lay in sorted(FOLDERS.items(), key=lambda kv: -len(kv[0]))
                      if rel.startswith(folder + "/")), None)
        for line, mod in imported_names(f):
            top = mod.split(".")[0]
            if top in BARE:
                bad.append(f"{rel}:{line}: imports {mod!r} outside the mmmos namespace")
                continue
            target = layer_of_module(mod)
            if layer is None or target is None or target == layer:
                continue
            if target not in ALLOWED[layer]:
                bad.append(f"{rel}:{line}: {layer} imports {mod} ({target}), which is not below it")
    return bad


def project_files() -> list[Path]:
    files = []
    for folder in FOLDERS:
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def test_every_module_has_a_layer():
    lost = [p.relative_to(ROOT).as_posix() for p in (ROOT / "mmmos").rglob("*.py")
            if p.parent != ROOT / "mmmos" and not any(p.relative_to(ROOT).as_posix().startswith(f + "/") for f in FOLDERS)]
    assert lost == []


def test_imports_only_look_down():
    assert violations(project_files()) == []


def test_package_root_imports_no_stage():
    # ``import mmmos`` must stay light and below everything
    names = [m for _, m in imported_names(ROOT / "mmmos" / "__init__.py")]
    assert [m for m in names if layer_of_module(m) not in (None, "ground")] == []


@pytest.mark.parametrize("src, layer_folder, expect", [
    ("from mmmos.sweep import run_sweep\n", "mmmos/core", "ground imports mmmos.sweep"),
    ("from mmmos.app.cli import main\n", "extract", "extract imports mmmos.app.cli"),
    ("from ..ensemble import x\n", "mmmos/sweep", "sweep imports mmmos.ensemble"),
    ("import heads\n", "losses", "outside the mmmos namespace"),
    ("from mmmos import extract\n", "cache_store", "cache_store imports mmmos.extract"),
])
def test_checker_catches_upward_edges(tmp_path, monkeypatch, src, layer_folder, expect):
    """The checker itself: a planted upward import in a scratch copy of the layout is reported."""
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    d = tmp_path / layer_folder
    d.mkdir(parents=True)
    (d / "planted.py").write_text(src)
    (bad,) = violations([d / "planted.py"])
    assert expect in bad


# -- import cycles -----------------------------------------------------------------------------------------
def module_name(path: Path) -> str:
    pkg = package_of(path)
    return pkg if path.name == "__init__.py" else f"{pkg}.{path.stem}"


def import_graph(files: list[Path]) -> dict[str, set[str]]:
    """Project module -> the project modules it imports (at the top or inside functions: a lazy import still
    ties the two modules together).  ``from pkg import name`` is an edge to ``pkg.name`` when that is a module,
    else to ``pkg``; a name that is no project module is followed up to its nearest project package."""
    mods = {module_name(f): f for f in files}
    graph: dict[str, set[str]] = {}
    for name, f in mods.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _from_module(node, package_of(f))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                targets = subs if len(subs) == len(node.names) else [*subs, base]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges.add(t)
        graph[name] = edges
    return graph


def _from_module(node: ast.ImportFrom, pkg: str) -> str:
    """The absolute module of ``from X import ...`` in package ``pkg`` (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    base = pkg.split(".")
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycle():
    assert cycles(import_graph(project_files())) == []


def test_cycle_finder_finds_a_planted_cycle(tmp_path, monkeypatch):
    """The checker itself: two modules that import each other (one lazily) form a reported cycle; a third
    that only imports them does not join it."""
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    d = tmp_path / "mmmos" / "sweep"
    d.mkdir(parents=True)
    (d / "__init__.py").write_text("")
    (d / "a.py").write_text("from .b import f\n")
    (d / "b.py").write_text("def f():\n    from mmmos.sweep import a\n")
    (d / "c.py").write_text("from . import a, b\n")
    files = sorted(d.glob("*.py"))
    assert cycles(import_graph(files)) == [["mmmos.sweep.a", "mmmos.sweep.b"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


# -- inference does not depend on training -------------------------------------------------------------------
def reaches(graph: dict[str, set[str]], start: str, prefix: str) -> list[list[str]]:
    """Import chains (lazy imports included) from ``start`` to a module under ``prefix``; the first found each."""
    seen, chains, todo = {start}, [], [[start]]
    while todo:
        path = todo.pop()
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == prefix or nxt.startswith(prefix + "."):
                chains.append(path + [nxt])
            elif nxt not in seen:
                seen.add(nxt)
                todo.append(path + [nxt])
    return chains


def test_predict_imports_no_training_stage():
    """`mmmos predict` runs without the training code: no module of mmmos/app/predict reaches mmmos.sweep,
    directly or through another project module, at the top or inside a function."""
    graph = import_graph(project_files())
    chains = [c for m in sorted(graph) if m == "mmmos.app.predict" or m.startswith("mmmos.app.predict.")
              for c in reaches(graph, m, "mmmos.sweep")]
    assert chains == []


def test_training_import_check_sees_lazy_imports(tmp_path, monkeypatch):
    """The checker itself: a lazy import of the sweep inside a predict function is found."""
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    d = tmp_path / "mmmos" / "app" / "predict"
    d.mkdir(parents=True)
    (d / "__init__.py").write_text("")
    (d / "a.py").write_text("def f():\n    from mmmos.sweep.track1.bank import Track1Bank\n")
    s = tmp_path / "mmmos" / "sweep"
    s.mkdir(parents=True)
    (s / "__init__.py").write_text("")
    graph = import_graph(sorted(d.glob("*.py")) + sorted(s.glob("*.py")))
    assert reaches(graph, "mmmos.app.predict.a", "mmmos.sweep") == [["mmmos.app.predict.a", "mmmos.sweep"]]
