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
