"""mmmos.report: the HTML report holds the tables and decodable embedded images of the right size."""
from __future__ import annotations

import argparse
import base64
import io
import re

import numpy as np
import polars as pl
import pytest
from PIL import Image
from scipy import stats

from test_ensemble import RANKING, make_fake_sweep  # pytest puts tests/ on the path (rootdir conftest-less)

from mmmos.app import report, report_figures
from mmmos.app.cli import main as mmmos_main

AXES = ("PQ", "PC", "CE", "CU")


def _px(size: tuple[float, float]) -> tuple[int, int]:
    return round(size[0] * report_figures.DPI), round(size[1] * report_figures.DPI)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    run = make_fake_sweep(root)
    html_path = report.write_report(run)  # no summary.parquet, no ensembles yet: both are made
    return run, html_path


def _images(html: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)]


def test_report_contains_tables_and_images(built):
    run, path = built
    assert path == run / "report" / "report.html"
    assert (run / "summary.parquet").is_file() and (run / "ensembles" / "members.json").is_file()
    html = path.read_text()
    assert "Table III layout" in html and "Table IV layout" in html
    for name in RANKING:
        assert f"<td class='t'>{name}</td>" in html
    for strategy in ("submitted", "all", "pam-top-1"):
        assert f"<td class='t'>{strategy}</td>" in html
    assert "SRCC per domain" in html
    imgs = _images(html)
    # selection, scatter on dev, scatter on pam_dev, per-domain bars (2 sets side by side)
    assert [im.size for im in imgs] == [_px(report_figures.SELECTION_SIZE), _px(report_figures.SCATTER_SIZE), _px(report_figures.SCATTER_SIZE),
                                        (_px(report_figures.DOMAIN_PANEL_SIZE)[0] * 2, _px(report_figures.DOMAIN_PANEL_SIZE)[1])]
    for im in imgs:
        im.load()  # decodes fully
        assert im.format == "PNG"
        assert np.asarray(im.convert("L")).std() > 5  # not a blank canvas
    pngs = sorted(p.name for p in path.parent.glob("*.png"))
    assert pngs == ["report_domains.png", "report_scatter_dev.png", "report_scatter_pam_dev.png",
                    "report_selection.png"]
    embedded = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert base64.b64decode(embedded[0]) == (path.parent / "report_selection.png").read_bytes()


def test_domain_table_matches_scipy(built):
    run, _ = built
    inputs = report._load_inputs(run, None, "pam-top-4")
    table = report.domain_table(inputs)
    assert table["domain"].to_list() == ["speech", "music", "sound"] * 2
    pred = pl.read_parquet(run / "ensembles" / "predictions" / "pam-top-4" / "pam_dev.parquet")
    truth = pl.read_csv(run.parent / "pam_dev.csv")
    j = pred.join(truth, on="clip_id", suffix="_t").filter(pl.col("domain") == "music")
    row = table.filter((pl.col("set") == "pam_dev") & (pl.col("domain") == "music")).row(0, named=True)
    assert row["n"] == j.height == 10
    assert row["CE"] == pytest.approx(stats.spearmanr(j["CE"], j["CE_t"]).statistic, abs=1e-12)
    comp_p = np.mean([j[a].to_numpy() for a in AXES], axis=0)
    comp_t = np.mean([j[f"{a}_t"].to_numpy() for a in AXES], axis=0)
    assert row["composite"] == pytest.approx(stats.spearmanr(comp_p, comp_t).statistic, abs=1e-12)


def test_labels_do_not_overlap():
    plt = report_figures.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=report_figures.DPI, layout="constrained")
    rng = np.random.default_rng(0)
    xs = np.r_[0.5 + 0.01 * rng.standard_normal(8), rng.uniform(0, 1, 6)]
    ys = np.r_[0.5 + 0.01 * rng.standard_normal(8), rng.uniform(0, 1, 6)]
    ax.scatter(xs, ys)
    ax.set_xlim(-0.1, 1.1)
    ax.set_ylim(-0.1, 1.1)
    report_figures._place_labels(ax, xs, ys, [f"configuration-{i}" for i in range(len(xs))])
    r = fig.canvas.get_renderer()
    from matplotlib.text import Text

    boxes = []
    for t in ax.texts:  # the text itself, without its leader line
        t.update_positions(r)
        boxes.append(Text.get_window_extent(t, r))
    assert len(boxes) == len(xs)
    frame = ax.get_window_extent(r)
    for i, a in enumerate(boxes):
        assert frame.x0 - 1 <= a.x0 and a.x1 <= frame.x1 + 1 and frame.y0 - 1 <= a.y0 and a.y1 <= frame.y1 + 1
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)
    plt.close(fig)


def test_report_without_pam_set_and_cli(tmp_path, capsys):
    run = make_fake_sweep(tmp_path, with_pam=False)
    p = argparse.ArgumentParser()
    report.add_arguments(p)
    out = tmp_path / "r" / "mine.html"
    assert report.run_cli(p.parse_args([str(run), "--out", str(out), "--strategy", "all"])) == 0
    html = out.read_text()
    assert "Needs rankings on both the dev and the PAM set." in html
    assert "<i>unavailable</i>" in html  # submitted, pam-top-K
    assert sorted(q.name for q in out.parent.glob("*.png")) == ["mine_domains.png", "mine_scatter_dev.png"]
    assert len(_images(html)) == 2
    # asking for an unavailable strategy is a clear error: one line, status 2
    capsys.readouterr()
    assert mmmos_main(["report", str(run), "--out", str(out), "--strategy", "submitted"]) == 2
    err = capsys.readouterr().err
    assert "'submitted' is not among the evaluated, available ones: all" in err
    assert err.count("\n") == 1 and "Traceback" not in err
