"""A self-contained HTML report of a sweep and its ensembles (``mmmos report RUN_DIR``).

Contents: the paper's Table III layout (every configuration, from ``<run>/summary.parquet``), the
Table IV layout (ensemble strategies, from ``<run>/ensembles/``; computed first when absent),
predicted-vs-true scatter plots of the chosen ensemble per axis, the model-selection picture
(each configuration's ranking metric on Dev vs PAM dev) and a per-domain (speech/music/sound)
SRCC breakdown. Figures are PNG (matplotlib, Agg), embedded in the HTML as base64 and also saved
next to it. Axes, score range, domains and the composite come from the run's task; metric directions
(best bold, second underlined) from the metric registry.

The figures are drawn by :mod:`mmmos.app.report_figures`; this module reads and checks the inputs, writes the
HTML page and puts the files in place (staged, then moved with signals held back).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as _dt
import glob
import html
import json
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mmmos.app.report_figures import (DPI, domain_figure, joined_labels, pyplot, scatter_figure, selection_figure,
                                      srcc_or_nan)
from mmmos.core.errors import UserError
from mmmos.core.tasks import Task, get_task

if TYPE_CHECKING:
    import polars as pl



class ReportError(UserError, ValueError):
    """The run or its ensemble outputs cannot be reported on (message names the file or option)."""


class ReportFileMissing(UserError, FileNotFoundError):
    """A run folder or an ensemble output the report needs does not exist."""




# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
@dataclass
class ReportInputs:
    run: Path
    summary: "pl.DataFrame"
    table_iv: "pl.DataFrame"
    members: dict  # members.json of the ensembles
    strategy: str  # the ensemble shown in the figures
    predictions: dict  # set -> chosen ensemble's predictions
    truth: dict  # set -> labels
    task: Task = field(default_factory=get_task)


def _ensemble_cmd(run: Path, ens: Path, given: bool) -> str:
    """The command that rewrites the ensemble outputs the report reads (named in the errors about them)."""
    return f"`mmmos ensemble {run}{f' --out {ens}' if given else ''}`"


_CRITERION_KEYS = ("metric", "level", "axis", "dev_set", "pam_set", "top")


def _members_problem(doc) -> str | None:
    """What is wrong with the shape of a members.json document (None: every key the report reads is usable)."""
    def strs(v) -> bool:
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, not an object"
    missing = [k for k in ("strategies", "sets", "configs", "criterion") if k not in doc]
    if missing:
        return f"no {', '.join(repr(k) for k in missing)}"
    st = doc["strategies"]
    if not isinstance(st, dict):
        return "'strategies' is not a mapping"
    for name, v in st.items():
        if not isinstance(v, dict) or not (strs(v.get("members")) or isinstance(v.get("unavailable"), str)):
            return f"strategy {name!r} has neither a 'members' list nor an 'unavailable' reason"
    if not strs(doc["sets"]) or not strs(doc["configs"]):
        return "'sets' and 'configs' must be lists of names"
    crit = doc["criterion"]
    if not isinstance(crit, dict) or any(k not in crit for k in _CRITERION_KEYS):
        return f"'criterion' needs {', '.join(_CRITERION_KEYS)}"
    if isinstance(crit["top"], bool) or not isinstance(crit["top"], int):
        return "'criterion.top' is not a whole number"
    truth = doc.get("truth", {})
    if not isinstance(truth, dict) or not all(isinstance(v, str) for v in truth.values()):
        return "'truth' is not a mapping of set to label file"
    rk = doc.get("rankings", {})
    if not isinstance(rk, dict) or not all(
            isinstance(r, list) and all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str)
                                        and (e[1] is None or isinstance(e[1], (int, float))) for e in r)
            for r in rk.values()):
        return "'rankings' is not a mapping of set to [configuration, value] pairs"
    if not strs(doc.get("notes", [])):
        return "'notes' is not a list of strings"
    return None


def _read_members(path: Path, cmd: str) -> dict:
    """members.json, checked for every key the report reads: a damaged file is one line with its repair."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: not readable JSON ({' '.join(str(e).split())}); re-run {cmd} to rewrite it") from None
    problem = _members_problem(doc)
    if problem:
        raise ReportError(f"{path}: not an ensemble members file ({problem}); re-run {cmd} to rewrite it")
    return doc


def _read_parquet(path: Path) -> "pl.DataFrame":
    import polars as pl

    try:
        return pl.read_parquet(path)
    except FileNotFoundError:
        raise ReportFileMissing(f"{path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - polars raises several types for a damaged file
        raise ReportError(f"{path}: not a readable Parquet file ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:300]})") from None


def _summary(rd) -> "pl.DataFrame":
    from mmmos import sweep as sweep_mod

    summary = _read_parquet(rd.summary_parquet) if rd.summary_parquet.is_file() else sweep_mod.write_summary(rd.path)
    if summary is None:
        raise ReportFileMissing(f"{rd.path}: no finished configurations to report on")
    return summary


def _ensembles(run: Path, ensembles: Path | None) -> Path:
    from mmmos import ensemble as select_ensemble

    ens = Path(ensembles) if ensembles else select_ensemble.default_out(run)
    if not (ens / "members.json").is_file():
        if ensembles:
            raise ReportFileMissing(f"{ens}: no members.json (run `mmmos ensemble {run} --out {ens}` first)")
        select_ensemble.run_ensembles(run, out=ens)
    return ens


def _chosen_strategy(members: dict, ens: Path, strategy: str | None) -> str:
    available = [s for s, m in members["strategies"].items() if "members" in m]
    if strategy is None:
        if not available:
            raise ReportError(f"{ens}: no strategy was available; nothing to plot")
        return "submitted" if "submitted" in available else available[0]
    if strategy not in available:
        raise ReportError(f"strategy {strategy!r} is not among the evaluated, available ones: {', '.join(available)}")
    return strategy


def _load_inputs(run: Path, ensembles: Path | None, strategy: str | None) -> ReportInputs:
    from mmmos.core.rundir import RunDir
    from mmmos.core.truth import read_truth

    rd = RunDir(run)
    _check_run(run)
    task = get_task(rd.task())
    summary = _summary(rd)
    ens = _ensembles(run, ensembles)
    cmd = _ensemble_cmd(run, ens, ensembles is not None)
    members = _read_members(ens / "members.json", cmd)
    table_iv = _read_parquet(ens / "table_iv.parquet")
    strategy = _chosen_strategy(members, ens, strategy)
    preds, truth = {}, {}
    for s in members["sets"]:
        f = ens / "predictions" / strategy / f"{s}.parquet"
        labelled = s in members.get("truth", {})
        if f.is_file():
            preds[s] = _read_parquet(f)
        elif labelled:  # the ensemble writes every set's predictions: a missing one is damage, not "unlabelled"
            raise ReportFileMissing(f"{f}: no such file (predictions of ensemble {strategy!r} on the labelled set "
                                    f"{s!r}); re-run {cmd} to rewrite the ensemble outputs")
        if labelled:
            truth[s] = read_truth(members["truth"][s], task=task)
    return ReportInputs(run, summary, table_iv, members, strategy, preds, truth, task)




def domain_table(inputs: ReportInputs) -> "pl.DataFrame":
    """Utterance-level SRCC of the chosen ensemble per set, domain and axis (+ composite)."""
    import polars as pl

    domains, all_axes = inputs.task.domains, inputs.task.all_axes
    rows = []
    for s, pred in inputs.predictions.items():
        if s not in inputs.truth:
            continue
        j = joined_labels(pred, inputs.truth[s], inputs.task)
        doms = [d for d in domains if d in set(j["domain"].drop_nulls().to_list())]
        doms += sorted(set(j["domain"].drop_nulls().to_list()) - set(domains))
        if j["domain"].null_count():
            doms.append(None)
        for d in doms:
            part = j.filter(pl.col("domain").is_null() if d is None else pl.col("domain") == d)
            row = {"set": s, "domain": d or "unknown", "n": part.height}
            for a in all_axes:
                row[a] = srcc_or_nan(part[a].to_numpy(), part[f"t_{a}"].to_numpy())
            rows.append(row)
    schema = {"set": pl.String, "domain": pl.String, "n": pl.Int64, **{a: pl.Float64 for a in all_axes}}
    return pl.DataFrame(rows, schema=schema)




# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------
def _cell(v, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else f"{v:.{digits}f}"
    return html.escape(str(v))


def _ranks(values: list, lower_better: bool) -> dict[int, int]:
    """Row index -> 1 (best) / 2 (second) for a metric column."""
    ok = [(v, i) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    ok.sort(key=lambda t: t[0] if lower_better else -t[0])
    distinct = sorted({v for v, _ in ok}, reverse=not lower_better)[:2]
    return {i: distinct.index(v) + 1 for v, i in ok if v in distinct}


def html_table(df: "pl.DataFrame", lead: list[str], groups: dict[str, list[str]], caption: str = "") -> str:
    """An HTML table: ``lead`` columns, then metric columns grouped under a spanning header.

    ``groups`` maps a group title to its columns (names like ``set/utt_SRCC``); in each metric column
    the best value is bold, the second underlined, by the metric's direction in the registry (columns
    that name no registered metric, e.g. per-domain SRCC, count higher as better).
    """
    from mmmos.core.metrics import metric_of_column

    h1 = "".join(f'<th rowspan="2">{html.escape(c)}</th>' for c in lead)
    h1 += "".join(f'<th colspan="{len(cs)}">{html.escape(g)}</th>' for g, cs in groups.items())
    h2 = "".join(f"<th>{html.escape(c.split('/', 1)[-1].replace('_', ' '))}</th>" for cs in groups.values() for c in cs)
    def lower_better(c: str) -> bool:
        m = metric_of_column(c)
        return m is not None and not m.higher_is_better

    marks = {c: _ranks(df[c].to_list(), lower_better(c)) for cs in groups.values() for c in cs}
    body = []
    for i, r in enumerate(df.iter_rows(named=True)):
        tds = "".join(f"<td class='t'>{_cell(r[c])}</td>" for c in lead)
        for cs in groups.values():
            for c in cs:
                txt, m = _cell(r[c]), marks[c].get(i)
                txt = f"<b>{txt}</b>" if m == 1 else (f"<u>{txt}</u>" if m == 2 else txt)
                tds += f"<td>{txt}</td>"
        body.append(f"<tr>{tds}</tr>")
    cap = f"<caption>{caption}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{h1}</tr><tr>{h2}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _metric_groups(columns: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for c in columns:
        if "/" in c:
            groups.setdefault(c.split("/", 1)[0], []).append(c)
    return groups


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;
line-height:1.4;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
td.t,th{text-align:left} th{background:#f3f3f3}
caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
code{background:#f5f5f5;padding:0 3px} .note{color:#666;font-size:13px}
"""


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def write_report(run_dir: str | Path, out: str | Path | None = None, *, ensembles: str | Path | None = None,
                 strategy: str | None = None) -> Path:
    """Write the HTML report (default ``<run>/report/report.html``) and its PNGs next to it.

    A labelled set without the chosen strategy's predictions is an error (:class:`ReportFileMissing`, exit 2,
    naming the file and ``mmmos ensemble RUN``): a report without its figures would pass for a complete one.

    Every file is first written into a hidden staging folder next to ``out``, then moved into place with
    Ctrl-C/SIGTERM held back: the old page is removed first, then the figures of an earlier report that this one
    does not draw, then the new figures, the page last. An interrupted run leaves the previous report untouched;
    no final name ever holds half a file.
    """
    run = Path(run_dir)
    _check_run(run)  # first: a mistyped RUN_DIR must not get a report/ folder made inside it
    out = Path(out) if out else run / "report" / "report.html"
    made, stage = _check_out(out)
    try:
        _remove_dead_stages(out, stage)
        inputs = _load_inputs(run, Path(ensembles) if ensembles else None, strategy)
        pngs = _write(run, inputs, out, stage)
        _commit(stage, out, pngs)
        return out
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # before the folders it sits in
        for d in made:  # a failed first report leaves no empty folders behind
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _check_run(run: Path) -> None:
    from mmmos.core.rundir import RunDir

    if not RunDir(run).configs_path.is_dir():
        raise ReportFileMissing(f"{run}: not a sweep directory (no configs/ folder)")


def _check_out(out: Path) -> tuple[list[Path], Path]:
    """Refuse (one line, exit 2) an output path the report cannot be written to, before any work is done; make
    its folder and the staging folder in it. Returns the folders made for ``out``, deepest first, and the stage."""
    if out.is_dir():
        raise ReportError(f"{out}: is a folder; the report is an HTML file (pass --out FOLDER/report.html)")
    parent = out.parent
    made = [d for d in (parent, *parent.parents) if not d.exists() and not d.is_symlink()]
    if not parent.is_dir():
        if parent.exists() or parent.is_symlink():
            raise ReportError(f"{parent}: exists and is not a folder, so the report cannot go into it "
                              "(move it away or pass --out)")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ReportError(f"{parent}: cannot make the report folder ({e.strerror or e})") from None
    stage = _stage(out, os.getpid())
    try:  # a folder we may not write into (read-only, /proc) fails here, not after the figures are drawn
        shutil.rmtree(stage, ignore_errors=True)  # a dead run's, that had this process id
        stage.mkdir()
    except OSError as e:
        for d in made:
            with contextlib.suppress(OSError):
                d.rmdir()
        raise ReportError(f"{parent}: the report cannot be written there ({e.strerror or e})") from None
    return made, stage


def _stage(out: Path, pid: int) -> Path:
    return out.parent / f".{out.name}.{pid}.tmp"


def _remove_dead_stages(out: Path, own: Path) -> None:
    """Staging folders of report runs killed outright (SIGKILL, power loss); a live run's is left alone."""
    for d in out.parent.glob(glob.escape(f".{out.name}.") + "*.tmp"):
        pid = d.name[len(out.name) + 2:-len(".tmp")]
        if d == own or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass  # alive (another user's): not ours to remove


def _own_figures(out: Path) -> list[Path]:
    """The PNGs a report named ``out`` writes next to it (see :func:`_write`), whichever run wrote them."""
    stem = glob.escape(out.stem)
    return [p for pat in (f"{stem}_selection.png", f"{stem}_domains.png", f"{stem}_scatter_*.png")
            for p in out.parent.glob(pat) if p.is_file()]


def _commit(stage: Path, out: Path, pngs: list[str]) -> None:
    """Move the staged report into place; a handful of renames, shielded so that a signal cannot cut it in half."""
    from mmmos.core.interrupts import shielded

    with shielded():
        # the page first: if the process dies here all the same (SIGKILL), no page sits next to another run's figures
        out.unlink(missing_ok=True)
        new = set(pngs)
        for old in _own_figures(out):
            if old.name not in new:  # drawn by an earlier report only (e.g. the scatter of a set that is gone)
                old.unlink(missing_ok=True)
        for name in pngs:
            os.replace(stage / name, out.parent / name)
        os.replace(stage / out.name, out)


def _write(run: Path, inputs: ReportInputs, out: Path, stage: Path) -> list[str]:
    """Draw the figures and the page into ``stage`` under their final names; returns the PNGs' names."""
    import polars as pl

    plt = pyplot()
    tk = inputs.task
    m = inputs.members
    crit = m["criterion"]
    chosen = m["strategies"][inputs.strategy]["members"]
    figures: list[tuple[str, str, bytes]] = []  # (section, caption, png)
    pngs: list[str] = []

    def save(fig, tag: str) -> bytes:
        path = stage / f"{out.stem}_{_safe(tag)}.png"
        try:
            fig.savefig(path, dpi=DPI)
        finally:
            plt.close(fig)
        pngs.append(path.name)
        return path.read_bytes()

    sel = selection_figure(inputs.summary, m)
    if sel is not None:
        figures.append(("selection", f"Each configuration's {crit['level']}-level {crit['metric']} ({crit['axis']}) "
                        f"on {crit['dev_set']} vs {crit['pam_set']}. Shaded: in both top-{crit['top']} lists; "
                        "black ring: member of the submitted ensemble.", save(sel, "selection")))
    for s, pred in inputs.predictions.items():
        if s not in inputs.truth:
            continue
        title = f"Ensemble '{inputs.strategy}' ({len(chosen)} models) on {s}: predicted vs true"
        figures.append(("scatter", f"{s}: predicted vs true per axis (colours: domain; dashed: identity).",
                        save(scatter_figure(pred, inputs.truth[s], title, tk), f"scatter_{s}")))
    dom = domain_table(inputs)
    dfig = domain_figure(dom, tk)
    if dfig is not None:
        figures.append(("domain", "Utterance-level SRCC per domain.", save(dfig, "domains")))

    # Table III with the membership column of the chosen ensemble
    summ = inputs.summary.with_columns(
        pl.col("config").is_in(chosen).map_elements(lambda b: "✓" if b else "", return_dtype=pl.String)
        .alias(f"in {inputs.strategy}"))
    lead3 = [c for c in summ.columns if "/" not in c]
    t3 = html_table(summ, lead3, _metric_groups(summ.columns),
                    "Table III layout: every configuration (composite; utt = utterance level, sys = system level; "
                    "best <b>bold</b>, second <u>underlined</u>)")
    t4df = inputs.table_iv
    lead4 = [c for c in ("strategy", "n_members", "status", "fit_set") if c in t4df.columns]
    t4 = html_table(t4df.drop("members"), lead4, _metric_groups(t4df.columns),
                    "Table IV layout: ensemble strategies (composite)")
    dom_groups = {"SRCC (utterance level)": list(tk.all_axes)}
    t_dom = html_table(dom, ["set", "domain", "n"], dom_groups, f"SRCC per domain, ensemble '{inputs.strategy}'")

    members_html = "".join(
        f"<li><b>{html.escape(s)}</b>: " + (html.escape(", ".join(v["members"])) if "members" in v
                                            else f"<i>unavailable</i> — {html.escape(v['unavailable'])}") + "</li>"
        for s, v in m["strategies"].items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in m.get("notes", []))
    imgs = {k: "".join(f"<figure>{_img(png, cap)}<figcaption class='note'>{html.escape(cap)}</figcaption></figure>"
                       for sec, cap, png in figures if sec == k) for k in ("selection", "scatter", "domain")}
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mmmos report — {html.escape(run.name)}</title>
<style>{_CSS}</style></head><body>
<h1>mmmos report</h1>
<p class="note">Run <code>{html.escape(str(run.resolve()))}</code>; {len(m['configs'])} configurations; sets
{html.escape(', '.join(m['sets']))}; generated {_dt.datetime.now().isoformat(timespec='seconds')}.
Scores are on the {tk.lo:g}–{tk.hi:g} scale; composite = mean of {html.escape(', '.join(tk.composite_axes))}.</p>
<h2>Configurations</h2>
{t3}
<h2>Ensembles</h2>
<p>Ranking: {html.escape(crit['level'])}-level {html.escape(crit['metric'])} of the {html.escape(crit['axis'])} score;
submitted = top-{crit['top']} on {html.escape(crit['dev_set'])} ∩ top-{crit['top']} on {html.escape(crit['pam_set'])};
ties by metric, then name. Ensemble = mean of the members' predictions, except <code>stack</code>: a meta-model
fitted per axis on the set named in <i>fit_set</i>, whose own figures are out-of-fold.</p>
{t4}
<ul>{members_html}</ul>
<h2>Model selection</h2>
{imgs['selection'] or '<p class="note">Needs rankings on both the dev and the PAM set.</p>'}
<h2>Ensemble '{html.escape(inputs.strategy)}': predicted vs true</h2>
{imgs['scatter'] or '<p class="note">No labelled set.</p>'}
<h2>Per domain</h2>
{t_dom}
{imgs['domain']}
{f'<h2>Notes</h2><ul class="note">{notes}</ul>' if notes else ''}
</body></html>
"""
    (stage / out.name).write_text(doc, encoding="utf-8")
    return pngs


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a sweep directory written by `mmmos sweep`")
    p.add_argument("--out", help="HTML file to write (default RUN_DIR/report/report.html; PNGs go next to it)")
    p.add_argument("--ensembles", help="ensemble outputs of `mmmos ensemble --out` (default RUN_DIR/ensembles, "
                                       "computed with the default strategies when absent)")
    p.add_argument("--strategy", help="ensemble shown in the figures (default: submitted if available)")


def run_cli(a: argparse.Namespace) -> int:
    """``mmmos report``: write the report; 0 ok. Bad input raises UserError (the CLI prints one line, exit 2)."""
    path = write_report(a.run_dir, a.out, ensembles=a.ensembles, strategy=a.strategy)
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    from mmmos.app.cli import main

    sys.exit(main(["report", *sys.argv[1:]]))
