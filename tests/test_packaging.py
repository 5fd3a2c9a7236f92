"""Packaging: one installed namespace, and every package folder of the project is listed for installation."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _folder_packages() -> set[str]:
    """Dotted names of every folder with an ``__init__.py`` below the mapped package roots."""
    out = set()
    for name, folder in _config()["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            if "__pycache__" in rel:
                continue
            # a folder mapped on its own (e.g. extract/ -> mmmos.extract) is counted from its own mapping
            dotted = ".".join((name, *rel))
            if any(dotted == n or dotted.startswith(n + ".") for n in _config()["package-dir"] if n != name
                   and n.startswith(name + ".")):
                continue
            out.add(dotted)
    return out


def test_every_package_folder_is_installed():
    assert set(_config()["packages"]) == _folder_packages()


def test_one_top_level_name():
    cfg = _config()
    assert {p.split(".")[0] for p in cfg["packages"]} == {"mmmos"}
    assert "py-modules" not in cfg
    assert {n.split(".")[0] for n in cfg["package-dir"]} == {"mmmos"}
