"""Dependencies resolve to a working set: pyproject's floors and caps cover what the code needs, and the
installed versions satisfy them."""
from __future__ import annotations

import inspect
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def _spec(name: str):
    return next(r.specifier for r in _requirements() if r.name.lower() == name)


def test_installed_versions_satisfy_pyproject():
    bad = []
    for req in _requirements():
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            continue  # an extra not installed here (its own test skips)
        if not req.specifier.contains(have, prereleases=True):
            bad.append(f"{req.name} {have} does not satisfy {req.specifier}")
    assert not bad, bad


def test_polars_floor_has_join_maintain_order():
    """The code joins with ``maintain_order=`` (polars >= 1.18): an older polars must not satisfy the floor."""
    import polars as pl

    assert "maintain_order" in inspect.signature(pl.DataFrame.join).parameters
    assert not _spec("polars").contains("1.17.1")
    assert Version(metadata.version("polars")) >= Version("1.18")


def test_transformers_is_capped_below_5_for_muq():
    """muq 0.1.0's conformer config breaks under transformers 5; the cap keeps pip from resolving it."""
    assert not _spec("transformers").contains("5.0.0")
    assert _spec("transformers").contains(metadata.version("transformers"))


@pytest.mark.parametrize("name", ["torch", "torchaudio"])
def test_torch_range_admits_the_pinned_install(name):
    assert _spec(name).contains("2.9.1")
    assert _spec(name).contains(metadata.version(name).split("+")[0])
