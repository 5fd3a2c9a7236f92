"""The report's figures (``mmmos report``): predicted-vs-true scatter plots per axis, the model-selection
picture (each configuration's ranking metric on Dev vs PAM dev, labels placed without overlap) and SRCC per
domain.  matplotlib with the Agg backend; every function returns a figure the report saves as PNG."""
from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from mmmos.core.tasks import COMPOSITE, Task, get_task

if TYPE_CHECKING:
    import polars as pl

DPI = 100
SCATTER_SIZE = (9.0, 8.5)  # inches; 2 x 2 panels (one per axis; rows grow with the task's axes)
SELECTION_SIZE = (11.0, 7.5)
DOMAIN_PANEL_SIZE = (5.5, 4.8)  # per labelled set, side by side


def _axis_title(task: Task, axis: str) -> str:
    if axis == COMPOSITE:
        return f"composite (mean of {', '.join(task.composite_axes)})"
    return task.axis_titles.get(axis, axis).replace("_", " ")


def joined_labels(pred: "pl.DataFrame", truth: "pl.DataFrame", task: Task | None = None) -> "pl.DataFrame":
    """Predictions (``<axis>``) next to labels (``t_<axis>``) and the composite, only clips with every label."""
    import polars as pl

    tk = get_task(task)
    axes, comp = tk.axes, tk.composite_axes
    t = truth.select("clip_id", *[pl.col(a).alias(f"t_{a}") for a in axes])
    j = pred.join(t, on="clip_id", how="inner").filter(
        pl.all_horizontal([pl.col(f"t_{a}").is_not_null() & pl.col(f"t_{a}").is_not_nan() for a in axes]))
    return j.with_columns(
        (sum(pl.col(a) for a in comp) / len(comp)).alias(COMPOSITE),
        (sum(pl.col(f"t_{a}") for a in comp) / len(comp)).alias(f"t_{COMPOSITE}"),
    )


def srcc_or_nan(p: np.ndarray, y: np.ndarray) -> float:
    from mmmos.core.metrics import UndefinedMetricWarning, srcc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return srcc(p, y) if len(p) else math.nan


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


DOMAIN_COLOURS = {"speech": "#1f77b4", "music": "#d62728", "sound": "#2ca02c", "unknown": "#7f7f7f"}


def scatter_figure(pred: "pl.DataFrame", truth: "pl.DataFrame", title: str, task: Task | None = None):
    """One panel per axis (two per row), predicted vs true on the task's score range, coloured by domain."""
    plt = pyplot()
    tk = get_task(task)
    lo, hi = tk.score_range
    j = joined_labels(pred, truth, tk)
    n_rows = max(1, math.ceil(tk.n_axes / 2))
    fig, axs = plt.subplots(n_rows, 2, figsize=(SCATTER_SIZE[0], SCATTER_SIZE[1] * n_rows / 2), dpi=DPI,
                            layout="constrained", squeeze=False)
    doms = j["domain"].fill_null("unknown").to_numpy()
    known = tk.domains
    present = [d for d in (*known, "unknown") if d in set(doms)] + sorted(set(doms) - set(known) - {"unknown"})
    for ax in axs.flat[tk.n_axes:]:
        ax.axis("off")
    ticks = np.linspace(lo, hi, 6)
    for ax, a in zip(axs.flat, tk.axes):
        p, y = j[a].to_numpy(), j[f"t_{a}"].to_numpy()
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--", label="identity (y = x)", zorder=1)
        # one scatter in a fixed shuffled order, so no domain is painted over the others wholesale
        order = np.random.default_rng(0).permutation(len(p))
        colours = [DOMAIN_COLOURS.get(d, DOMAIN_COLOURS["unknown"]) for d in doms[order]]
        size, alpha = (12, 0.6) if len(p) < 500 else (5, 0.35)
        ax.scatter(y[order], p[order], s=size, alpha=alpha, c=colours, edgecolors="none", zorder=2)
        for d in present:  # legend proxies
            ax.scatter([], [], s=12, color=DOMAIN_COLOURS.get(d, DOMAIN_COLOURS["unknown"]),
                       label=f"{d} ({int((doms == d).sum())})")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.grid(alpha=0.3)
        ax.set_xlabel(f"true score ({lo:g}–{hi:g})")
        ax.set_ylabel(f"predicted score ({lo:g}–{hi:g})")
        ax.set_title(f"{a} — {_axis_title(tk, a)}\nSRCC {srcc_or_nan(p, y):.3f}, n = {len(p)}", fontsize=11)
    axs[0, 0].legend(loc="upper left", fontsize=8, framealpha=0.9)
    fig.suptitle(title, fontsize=12)
    return fig


def _place_labels(ax, xs, ys, texts, fontsize: float = 7.5) -> None:
    """Label points without overlap: try offsets on growing rings, keep the first free spot.

    Free = inside the axes, not over another label or another point's marker. With no free spot the
    least-overlapping candidate is used. Far labels get a thin leader line.
    """
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()
    fig.set_layout_engine("none")  # freeze the layout: labels are placed in display coordinates
    r = fig.canvas.get_renderer()
    px = ax.transData.transform(np.c_[xs, ys])
    pad = 5 * fig.dpi / 72
    marks = [Bbox.from_extents(x - pad, y - pad, x + pad, y + pad) for x, y in px]
    frame = ax.get_window_extent(r)
    angles = [0, 180, 90, 270, 45, 135, 315, 225, 22, 158, 338, 202, 68, 112, 292, 248]
    rings = [7, 14, 22, 32, 44, 58, 74, 92]
    placed: list = []

    def overlap(b) -> float:
        tot = 0.0
        for o in placed + marks:
            w = min(b.x1, o.x1) - max(b.x0, o.x0)
            h = min(b.y1, o.y1) - max(b.y0, o.y0)
            if w > 0 and h > 0:
                tot += w * h
        out = max(0.0, frame.x0 - b.x0) + max(0.0, b.x1 - frame.x1) + max(0.0, frame.y0 - b.y0) + max(0.0, b.y1 - frame.y1)
        return tot + 1e4 * out

    for i in np.argsort(-np.asarray(ys)):  # top points first: they have the least room above
        best = None
        for rad in rings:
            for ang in angles:
                dx, dy = rad * math.cos(math.radians(ang)), rad * math.sin(math.radians(ang))
                ha = "left" if dx > 1 else ("right" if dx < -1 else "center")
                va = "bottom" if dy > 1 else ("top" if dy < -1 else "center")
                t = ax.annotate(texts[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                                fontsize=fontsize, zorder=5)
                b = t.get_window_extent(r)
                cost = overlap(b)
                t.remove()
                if best is None or cost < best[0]:
                    best = (cost, dx, dy, ha, va, b)
                if cost == 0:
                    break
            if best[0] == 0:
                break
        _, dx, dy, ha, va, b = best
        far = math.hypot(dx, dy) > 10
        ax.annotate(texts[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                    fontsize=fontsize, zorder=5,
                    arrowprops=dict(arrowstyle="-", color="0.55", lw=0.6, shrinkA=0, shrinkB=4) if far else None)
        placed.append(b)


_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]


def selection_figure(summary: "pl.DataFrame", members: dict):
    """Each configuration's ranking metric on the dev set vs the PAM set, with the top-N cut-offs.

    Markers by encoder set + head, colours by loss; the shaded corner holds the configurations in
    both top-N lists (the submitted ensemble). Returns None without rankings on both sets.
    """
    crit = members["criterion"]
    dev, pam, top = crit["dev_set"], crit["pam_set"], int(crit["top"])
    rk = members.get("rankings", {})
    if dev not in rk or pam not in rk:
        return None
    plt = pyplot()
    xd = {c: v for c, v in rk[dev]}
    yd = {c: v for c, v in rk[pam]}
    info = {r["config"]: r for r in summary.iter_rows(named=True)}
    names = [c for c in members["configs"] if xd.get(c) is not None and yd.get(c) is not None]
    groups = list(dict.fromkeys(f"{info.get(c, {}).get('encoders', '?')} / {info.get(c, {}).get('head', '?')}"
                                for c in names))
    losses = list(dict.fromkeys(info.get(c, {}).get("loss", "?") for c in names))
    cmap = plt.get_cmap("tab10")
    # legends live in their own axes on the right so they are never clipped
    fig, (ax, lax) = plt.subplots(1, 2, figsize=SELECTION_SIZE, dpi=DPI, layout="constrained",
                                  gridspec_kw={"width_ratios": [4.0, 1.0]})
    lax.axis("off")
    xs = np.array([xd[c] for c in names])
    ys = np.array([yd[c] for c in names])
    span_x = max(xs.max() - xs.min(), 0.02)
    span_y = max(ys.max() - ys.min(), 0.02)
    ax.set_xlim(xs.min() - 0.12 * span_x, xs.max() + 0.12 * span_x)
    ax.set_ylim(ys.min() - 0.12 * span_y, ys.max() + 0.12 * span_y)
    # the top-N cut-offs: halfway between the N-th and (N+1)-th value of each ranking
    sub = set(members["strategies"].get("submitted", {}).get("members", []))
    cuts = {}
    for key, ranked in (("x", rk[dev]), ("y", rk[pam])):
        vals = [v for _, v in ranked if v is not None]
        if len(vals) > top:
            cuts[key] = (vals[top - 1] + vals[top]) / 2
    if "x" in cuts:
        ax.axvline(cuts["x"], color="0.5", ls=":", lw=1)
        ax.annotate(f"top-{top} on {dev} →", (cuts["x"], 0), xycoords=("data", "axes fraction"),
                    xytext=(3, 4), textcoords="offset points", fontsize=8, color="0.35")
    if "y" in cuts:
        ax.axhline(cuts["y"], color="0.5", ls=":", lw=1)
        ax.annotate(f"top-{top} on {pam} ↑", (0, cuts["y"]), xycoords=("axes fraction", "data"),
                    xytext=(4, 3), textcoords="offset points", fontsize=8, color="0.35")
    if cuts:
        x0, x1 = ax.get_xlim()
        y0, y1 = ax.get_ylim()
        ax.axvspan(cuts.get("x", x0), x1, ymin=(cuts.get("y", y0) - y0) / (y1 - y0), color="#fff2cc", zorder=0,
                   label=f"in both top-{top} lists (submitted)")
    for c, x, y in zip(names, xs, ys):
        g = groups.index(f"{info.get(c, {}).get('encoders', '?')} / {info.get(c, {}).get('head', '?')}")
        lo = losses.index(info.get(c, {}).get("loss", "?"))
        ax.scatter([x], [y], marker=_MARKERS[g % len(_MARKERS)], s=55, color=cmap(lo % 10),
                   edgecolors="black" if c in sub else "none", linewidths=1.0, zorder=3)
    # legends built from proxies: one for heads (markers), one for losses (colours)
    from matplotlib.lines import Line2D

    # two lines per entry: long encoder lists would run past the figure's edge
    h1 = [Line2D([], [], marker=_MARKERS[i % len(_MARKERS)], ls="", color="0.3", markersize=7,
                 label=g.replace("+", "+\u200b").replace(" / ", "\nhead: "))
          for i, g in enumerate(groups)]
    h2 = [Line2D([], [], marker="o", ls="", color=cmap(i % 10), markersize=7, label=lo) for i, lo in enumerate(losses)]
    h3 = [Line2D([], [], marker="o", ls="", markerfacecolor="white", markeredgecolor="black", markersize=7,
                 label="submitted member")]
    leg1 = lax.legend(handles=h1, title="encoders / head (marker)", loc="upper left", bbox_to_anchor=(0.0, 1.0),
                      fontsize=8, title_fontsize=9, alignment="left")
    lax.add_artist(leg1)
    leg2 = lax.legend(handles=h2, title="loss (colour)", loc="upper left", bbox_to_anchor=(0.0, 0.62), fontsize=8,
                      title_fontsize=9, alignment="left")
    lax.add_artist(leg2)
    lax.legend(handles=h3 + ([plt.Rectangle((0, 0), 1, 1, color="#fff2cc", label=f"top-{top} on both")]
                              if cuts else []), loc="upper left", bbox_to_anchor=(0.0, 0.3), fontsize=8)
    left_out = [c for c in members["configs"] if c not in names]
    if left_out:  # an undefined metric (NaN) has no place on the axes: say which ones are missing
        lax.text(0.0, 0.12, "not shown (metric undefined):\n" + "\n".join(left_out), transform=lax.transAxes,
                 va="top", ha="left", fontsize=8, color="0.3")
    what = f"{crit['level']}-level {crit['metric']} ({crit['axis']})"
    ax.set_xlabel(f"{dev}: {what}")
    ax.set_ylabel(f"{pam}: {what}")
    ax.grid(alpha=0.3)
    ax.set_title(f"Model selection: each configuration on {dev} vs {pam}", fontsize=12)
    _place_labels(ax, xs, ys, names)
    return fig


def domain_figure(table: "pl.DataFrame", task: Task | None = None):
    """Grouped bars: SRCC per domain (groups) and axis (bars), one panel per set."""
    import polars as pl

    if table.height == 0:
        return None
    plt = pyplot()
    sets = table["set"].unique(maintain_order=True).to_list()
    fig, axs = plt.subplots(1, len(sets), figsize=(DOMAIN_PANEL_SIZE[0] * len(sets), DOMAIN_PANEL_SIZE[1]), dpi=DPI,
                            layout="constrained", squeeze=False)
    cols = get_task(task).all_axes
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    colours = [palette[k % len(palette)] for k in range(len(cols) - 1)] + ["#333333"]  # composite: dark
    width = 0.8 / len(cols)
    lo = min(0.0, float(np.nanmin(table.select(cols).to_numpy())) if table.height else 0.0)
    for ax, s in zip(axs[0], sets):
        part = table.filter(pl.col("set") == s)
        x = np.arange(part.height)
        for k, a in enumerate(cols):
            v = part[a].fill_null(float("nan")).to_numpy()
            pos = x + (k - (len(cols) - 1) / 2) * width
            ok = np.isfinite(v)
            ax.bar(pos[ok], v[ok], width, color=colours[k], label=a if ax is axs[0][0] else None)
            for xp in pos[~ok]:  # undefined (e.g. one clip, constant labels): say so, never draw a fake 0
                ax.text(xp, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color="0.4")
        ax.set_xticks(x, [f"{d}\n(n = {n})" for d, n in zip(part["domain"], part["n"])])
        ax.set_ylim(lo, 1.0)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("SRCC (utterance level)")
        ax.set_title(f"{s}: SRCC per domain", fontsize=11)
        ax.set_xlabel("domain (clips)")
        ax.grid(axis="y", alpha=0.3)
    fig.legend(title="axis", loc="outside upper center", ncol=len(cols), fontsize=9, title_fontsize=9)
    return fig
