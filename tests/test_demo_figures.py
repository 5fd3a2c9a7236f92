"""The README demo-figures block: replaced between its markers only; missing markers are a one-line error."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmmos.app.demos.figures import FiguresError, main, markers, replace_block


def test_replace_block_keeps_everything_outside_the_markers():
    start, end = markers("track1")
    text = f"a\n{start}\nold\n{end}\nb\n"
    assert replace_block(text, "track1", "| x |\n") == f"a\n{start}\n| x |\n{end}\nb\n"
    with pytest.raises(FiguresError, match="exactly one"):
        replace_block("no markers\n", "track1", "x")
    with pytest.raises(FiguresError, match="exactly one"):
        replace_block(f"{end}\n{start}\n", "track1", "x")


def test_repository_readme_has_the_track1_block():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start, end = markers("track1")
    assert text.count(start) == 1 and text.count(end) == 1
    block = text[text.index(start) + len(start):text.index(end)]
    assert "| utterance SRCC | MI | TA | composite |" in block and "shuffled-label control" in block


def test_missing_demo_output_is_exit_2(tmp_path, capsys):
    assert main(["--task", "track1", "--out", str(tmp_path)]) == 2
    assert "no Track 1 demo output" in capsys.readouterr().err
