"""Figures shared by the notebooks. Each function draws on a new figure and returns it."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from ..train.curriculum import Stage
from ..core.schemes import POS_SCHEMES

sns.set_theme(style="whitegrid", context="notebook")
PALETTE = dict(zip(["control", "targeted", "d1", "d2_nocarry", "d2_carry", "mixed", "low_sum",
                    "general", "ood_long", "mixed3"], sns.color_palette("tab10", 10)))
PALETTE.update(zip(["plain", "reversed", "scratchpad"], sns.color_palette("Set2", 3)))
PALETTE.update(zip(POS_SCHEMES, sns.color_palette("Dark2", len(POS_SCHEMES))))


CHAR_EM = 0.62   # a wide estimate of a character's advance, in font sizes (DejaVu Sans)


def _wrap(text: str, width_pt: float, size: float) -> str:
    """``text`` with every line wrapped to fit ``width_pt`` points at font ``size``."""
    chars = max(10, int(width_pt / (size * CHAR_EM)))
    return "\n".join(textwrap.fill(line, chars) if line else line for line in text.split("\n"))


def fit_titles(fig) -> None:
    """Wrap every axes title to its axes' width and the figure's title to the figure's, so
    that no title runs past the canvas (tests/test_plots.py renders every figure to check)."""
    W = fig.get_figwidth() * 72
    for ax in fig.axes:
        for t in (ax.title, ax._left_title, ax._right_title):
            if t.get_text():
                t.set_text(_wrap(t.get_text(), W * ax.get_position().width, t.get_fontsize()))
    sup = getattr(fig, "_suptitle", None)
    if sup is not None and sup.get_text():
        sup.set_text(_wrap(sup.get_text(), 0.96 * W, sup.get_fontsize()))


def _finish(fig) -> None:
    fit_titles(fig)
    fig.tight_layout()


def with_n(buckets, n: dict) -> list[str]:
    """Tick labels naming each bucket's number of problems: every figure states its n."""
    return [f"{b}\nn={n[b]:,}" if b in n else b for b in buckets]


def stage_schedule(scheds: dict[str, list[Stage]]):
    """Stacked bucket shares over the token budget, one panel per curriculum."""
    fig, axes = plt.subplots(1, len(scheds), figsize=(5.5 * len(scheds), 3.2), sharey=True,
                             squeeze=False)
    for ax, (name, st) in zip(axes[0], scheds.items()):
        buckets = list(dict.fromkeys(b for s in st for b, _ in s.weights))
        for s in st:
            w = dict(s.weights)
            bottom = 0.0
            for b in buckets:
                h = w.get(b, 0.0)
                ax.bar(s.start, h, width=s.end - s.start, bottom=bottom, align="edge",
                       color=PALETTE.get(b), edgecolor="white",
                       label=b if s is st[-1] or b not in [x for x, _ in st[-1].weights] else None)
                bottom += h
            ax.text((s.start + s.end) / 2, 1.02, s.name, ha="center", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.1)
        ax.set_title(f"{name} curriculum", pad=14)
        ax.set_xlabel("share of the training-token budget")
    axes[0][0].set_ylabel("share of each batch")
    handles, labels = [], []
    for ax in axes[0]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="center right", frameon=False)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    return fig


def smooth(y, k):
    """Trailing k-point moving average (the first k-1 points are left as they are)."""
    y = np.asarray(y, dtype=float)
    if len(y) < k or k < 2:
        return y
    c = np.cumsum(np.insert(y, 0, 0))
    out = (c[k:] - c[:-k]) / k
    return np.concatenate([y[: k - 1], out])


def loss_curves(hists: dict[str, dict], title: str = ""):
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for name, h in hists.items():
        tok = np.asarray(h["tokens"]) / 1e6
        ax.plot(tok, h["loss"], color=PALETTE.get(name), alpha=0.25, lw=0.8)
        ax.plot(tok, smooth(h["loss"], 25), color=PALETTE.get(name), label=name)
    ax.set_yscale("log")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("answer-token loss (nats)")
    ax.set_title(title or "SFT loss (faint: per step; solid: 25-step mean)")
    ax.legend()
    _finish(fig)
    return fig


def probe_curves(hists: dict[str, dict], buckets, n_probe: int):
    fig, axes = plt.subplots(1, len(hists), figsize=(5.5 * len(hists), 3.4), sharey=True,
                             squeeze=False)
    for ax, (name, h) in zip(axes[0], hists.items()):
        tok = np.array([e["tokens"] for e in h["val"]]) / 1e6
        for b in buckets:   # d1 has no validation problems (it is trained in full)
            if h["val"] and b in h["val"][0]:
                ax.plot(tok, [e[b] for e in h["val"]], marker=".", label=b, color=PALETTE.get(b))
        ax.set_title(f"{name}: greedy accuracy during SFT\n(probe: up to {n_probe} validation "
                     f"problems per bucket)", fontsize=10)
        ax.set_xlabel("training tokens (millions)")
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel("greedy exact match")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    _finish(fig)
    return fig


def bucket_bars(table: dict[str, dict[str, tuple[float, float, float]]], ylabel: str, title: str,
                n: dict | None = None):
    """table[arm][bucket] = (value, lo, hi): grouped bars with interval whiskers; ``n`` (bucket
    -> problems) goes under each bucket's name."""
    arms = list(table)
    buckets = list(next(iter(table.values())))
    x = np.arange(len(buckets))
    w = 0.8 / len(arms)
    many = len(arms) > 4   # the legend goes beside the axes, and the bars get room
    fig, ax = plt.subplots(figsize=(max(6, (0.2 * len(arms) if many else 1.1) * len(buckets))
                                    + (2.5 if many else 0), 3.4))
    colors = ([PALETTE.get(a) for a in arms] if not many or all(a in PALETTE for a in arms)
              else sns.color_palette("tab10", len(arms)))
    for i, arm in enumerate(arms):
        v = np.array([table[arm][b][0] for b in buckets])
        lo = np.array([table[arm][b][1] for b in buckets])
        hi = np.array([table[arm][b][2] for b in buckets])
        ax.bar(x + (i - (len(arms) - 1) / 2) * w, v, w, color=colors[i], label=arm,
               yerr=np.vstack([v - lo, hi - v]), capsize=2 if many else 3)
    ax.set_xticks(x, with_n(buckets, n or {}), fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if many:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    else:
        ax.legend()
    _finish(fig)
    return fig


def passk_curves(curves: dict[str, dict[str, list[tuple[int, float, float, float]]]], title: str,
                 n: dict | None = None):
    """curves[arm][bucket] = [(k, value, lo, hi), ...]; one panel per bucket (titled with its
    ``n`` problems when given)."""
    buckets = list(next(iter(curves.values())))
    cols = min(4, len(buckets))
    rows = int(np.ceil(len(buckets) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), sharey=True,
                             squeeze=False)
    for ax, b in zip(axes.flat, buckets):
        for arm, per in curves.items():
            k, v, lo, hi = map(np.array, zip(*per[b]))
            ax.plot(k, v, marker="o", color=PALETTE.get(arm), label=arm)
            ax.fill_between(k, lo, hi, color=PALETTE.get(arm), alpha=0.2)
        ax.set_xscale("log", base=2)
        ax.set_title(b if not n or b not in n else f"{b} (n={n[b]:,})")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("k")
    for ax in axes.flat[len(buckets):]:
        ax.axis("off")
    axes[0][0].set_ylabel("pass@k")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    _finish(fig)
    return fig


def headroom_curve(points: dict[str, tuple], k: int, title: str):
    """points[label] = (start pass@1, start pass@k, gain in greedy, gain in pass@1), gains
    in points: RL's gain against each of the start's two pass rates, one point per start."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    for ax, i, xname in ((axes[0], 0, "pass@1"), (axes[1], 1, f"pass@{k}")):
        for j, (name, p) in enumerate(points.items()):
            ax.plot(p[i], p[2], "o", color="tab:blue", label="gain in greedy accuracy" if j == 0 else None)
            ax.plot(p[i], p[3], "x", color="tab:orange", ms=8, label="gain in pass@1" if j == 0 else None)
            ax.annotate(name, (p[i], p[2]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel=f"the start's {xname} on general", xlim=(-0.05, 1.05),
               title=f"RL's gain against the start's {xname}")
    axes[0].set_ylabel("RL gain on general (points)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    _finish(fig)
    return fig


def headroom_seeds(points: list[dict], band: tuple[float, float], title: str,
                   fits: dict[str, dict] | None = None):
    """The headroom curve over seeds (summary.headroom's points): RL's gain in greedy accuracy
    against each predictor of summary.HEADROOM_PREDICTORS (the start's greedy accuracy, its
    pass@k, and the gap pass@k - greedy), one colour per start type, one marker per seed,
    the band of starts with headroom shaded on the greedy panel, and each panel's fitted
    curve (summary.headroom_fits) with its R² on the data and held out by seed."""
    from .summary import START_TYPES as order
    types = sorted(dict.fromkeys(p.get("type", "start") for p in points),
                   key=lambda t: order.index(t) if t in order else len(order))
    colors = dict(zip(types, sns.color_palette("tab10", max(len(types), 1))))
    seeds = list(dict.fromkeys(p["seed"] for p in points))
    marks = dict(zip(seeds, "osD^vP*Xhp" * (1 + len(seeds) // 10)))
    k = points[0]["k"] if points else 8
    panels = (("greedy", "greedy accuracy"), ("pass@k", f"pass@{k}"), ("gap", f"pass@{k} - greedy"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    for ax, (x, xname) in zip(axes, panels):
        if x == "greedy":
            ax.axvspan(*band, color="0.92", zorder=0)
        for t in types:
            for s in seeds:
                mine = [p for p in points if p.get("type", "start") == t and p["seed"] == s]
                if mine:
                    ax.plot([p[x] for p in mine], [100 * p["gain_greedy"] for p in mine], marks[s],
                            color=colors[t], alpha=0.85, ms=5)
        f = (fits or {}).get(x)
        sub = ""
        if f:
            lo, hi = min(p[x] for p in points), max(p[x] for p in points)
            xs = np.linspace(lo, hi, 100)
            ax.plot(xs, np.polyval(f["coef"], xs), color="black", lw=1.2)
            sub = f"\ndegree-{f['degree']} fit: R² {f['r2']:.2f}, held out {f['r2_held_out']:.2f}"
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel=f"the start's {xname} on general",
               xlim=(-0.05, 1.05) if x != "gap" else None)
        ax.set_title(f"gain against the start's {xname}{sub}", fontsize=9)
    axes[0].set_ylabel("RL gain in greedy general (points)")
    handles = ([plt.Line2D([], [], ls="", marker="o", color=colors[t], label=t) for t in types]
               + [plt.Line2D([], [], ls="", marker=marks[s], color="0.4", label=s) for s in seeds])
    axes[2].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    _finish(fig)
    return fig


def razor(points: list[dict], fit: dict | None, title: str):
    """Forgetting against KL (RL's Razor): points ``{start, beta, kl, forget, seed}`` (KL in
    nats per token on RL's prompts, the change on the unpractised buckets in points), one
    colour per start and one marker per seed, with the fitted line (``stats.polyfit``) and
    its R² (held out by seed where the fit has it)."""
    starts = list(dict.fromkeys(p["start"] for p in points))
    colors = dict(zip(starts, sns.color_palette("tab10", max(len(starts), 1))))
    seeds = list(dict.fromkeys(p["seed"] for p in points))
    marks = dict(zip(seeds, "osD^vP*Xhp" * (1 + len(seeds) // 10)))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for st in starts:
        for s in seeds:
            mine = [p for p in points if p["start"] == st and p["seed"] == s]
            if mine:
                ax.plot([p["kl"] for p in mine], [p["forget"] for p in mine], marks[s],
                        color=colors[st], alpha=0.85)
    line = ""
    if fit:
        xs = np.linspace(min(p["kl"] for p in points), max(p["kl"] for p in points), 50)
        held = f", held out by seed {fit['r2_held_out']:.2f}" if "r2_held_out" in fit else ""
        line = f"line: R² {fit['r2']:.2f}{held}, n={fit['n']}"
        ax.plot(xs, np.polyval(fit["coef"], xs), color="black", lw=1.2)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="exact KL to the start on RL's prompts (nats/token)",
           ylabel="change on unpractised buckets (points)")
    handles = ([plt.Line2D([], [], ls="", marker="o", color=colors[t], label=t) for t in starts]
               + ([plt.Line2D([], [], ls="", marker=marks[s], color="0.4", label=s) for s in seeds]
                  if len(seeds) > 1 else [])
               + ([plt.Line2D([], [], color="black", label=line)] if fit else []))
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(title, fontsize=10)
    _finish(fig)
    return fig


def length_curves(curves: dict[str, list[tuple]], trained_max: int, k: int, title: str):
    """curves[scheme] = [(digits, greedy, lo, hi, pass@k), ...]: greedy with its interval
    (solid) and pass@k (dashed) against operand length, the trained lengths shaded."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.axvspan(0.5, trained_max + 0.5, color="0.9", zorder=0)
    ax.text(0.6, 1.06, "trained lengths", fontsize=8, color="0.35", va="bottom")
    for name, rows in curves.items():
        n, v, lo, hi, pk = map(np.array, zip(*rows))
        color = PALETTE.get(name)
        line, = ax.plot(n, v, marker="o", color=color, label=f"{name} greedy")
        ax.fill_between(n, lo, hi, color=line.get_color(), alpha=0.15)
        ax.plot(n, pk, ls="--", marker=".", color=line.get_color(), alpha=0.8,
                label=f"{name} pass@{k}")
    ax.set_xticks([r[0] for r in next(iter(curves.values()))])
    ax.set_xlabel("digits per operand")
    ax.set_ylabel("exact match")
    ax.set_ylim(-0.03, 1.12)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    _finish(fig)
    return fig


def length_grids(grids: dict[str, np.ndarray], trained_max: int, withheld, title: str,
                 label: str = "greedy exact match", vmax: float = 1.0, cmap: str = "viridis"):
    """One heatmap per model of a (side, side) grid (row: digits of a, column: digits of b;
    NaN cells blank), each cell annotated in %: the trained lengths outlined in white, the
    withheld cell ``(i, j)`` (1-based, None for none) boxed in red."""
    names = list(grids)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols + 0.8, 3.2 * rows + 0.6), squeeze=False)
    from matplotlib.patches import Rectangle
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        m = np.asarray(grids[name], dtype=float)
        n = m.shape[0]
        im = ax.imshow(m, vmin=0, vmax=vmax, cmap=cmap, origin="upper",
                       extent=(0.5, n + 0.5, n + 0.5, 0.5))
        for i in range(n):
            for j in range(n):
                if np.isfinite(m[i, j]):
                    ax.text(j + 1, i + 1, f"{100 * m[i, j]:.0f}", ha="center", va="center",
                            fontsize=7, color="white" if m[i, j] < 0.6 * vmax else "black")
        ax.add_patch(Rectangle((0.5, 0.5), trained_max, trained_max, fill=False, ec="white", lw=2.5))
        ax.add_patch(Rectangle((0.5, 0.5), trained_max, trained_max, fill=False, ec="black", lw=0.8,
                               ls="--"))
        if withheld:
            ax.add_patch(Rectangle((withheld[1] - 0.5, withheld[0] - 0.5), 1, 1, fill=False,
                                   ec="tab:red", lw=2.5))
        ax.set_xticks(range(1, n + 1))
        ax.set_yticks(range(1, n + 1))
        ax.set_xlabel("digits of b")
        if ax in axes[:, 0]:
            ax.set_ylabel("digits of a")
        ax.set_title(name, fontsize=9)
        ax.grid(False)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    fig.suptitle(title + ("; outlined: trained lengths" + (f"; red: withheld cell {withheld}"
                                                           if withheld else "")), fontsize=10)
    fit_titles(fig)
    return fig


def transition_curves(rows: list[dict], title: str):
    """Calibration runs: each seed's probe curve of ``general`` (one line per seed), the steps
    where it first reached 50% and 90% marked; seeds that never reached 90% in red."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for r in rows:
        step, acc = zip(*[(s, a) for s, a in r["probe"] if a is not None])
        bad = r["t90"] is None
        ax.plot(step, acc, color="tab:red" if bad else "0.45", alpha=0.9 if bad else 0.45, lw=1)
        for t, m in ((r["t50"], "o"), (r["t90"], "^")):
            if t is not None:
                ax.plot(t, dict(zip(step, acc))[t], m, color="tab:blue", ms=4)
    ax.plot([], [], "o", color="tab:blue", ms=4, label="first probe >= 50%")
    ax.plot([], [], "^", color="tab:blue", ms=4, label="first probe >= 90%")
    ax.plot([], [], color="tab:red", label="never reached 90%")
    ax.set_xlabel("training step")
    ax.set_ylabel("general, greedy (probe)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    _finish(fig)
    return fig


def finding(r: dict, seeds: list[str], measures: list[dict]):
    """One finding of a cross-seed summary (findings.evaluate's result): each seed's value of
    every record it reads (grey, joined per seed), the mean over seeds with its interval
    (black), the study's published numbers (red stars, from the headline ``measures``). A
    record that is zero on every seed is left out and named in the title."""
    from ..core import stats
    from .findings import verdict_text
    from .summary import ours_text
    labels = {m["name"]: m for m in measures}
    parts = {n: v for n, v in r["parts"].items() if any(x != 0 for x in v.values())}
    dropped = [n for n in r["parts"] if n not in parts]
    fig, ax = plt.subplots(figsize=(min(12.0, max(5.5, 1.9 * len(parts) + 2)), 3.6))
    names = list(parts)
    scale = 100 if r["unit"] == "%" else 1
    for seed in seeds:
        ys = [parts[n].get(seed) for n in names]
        xs = [i for i, y in enumerate(ys) if y is not None]
        ax.plot(xs, [scale * ys[i] for i in xs], "o-", color="tab:grey", alpha=0.6, lw=0.8, ms=5)
    for i, n in enumerate(names):
        if len(parts[n]) > 1:   # the mean over seeds and its interval
            mean, lo, hi = stats.mean_interval(list(parts[n].values()),
                                               (0.0, 1.0) if r["unit"] == "%" else (0.0, np.inf))
            ax.errorbar(i + 0.12, scale * mean, yerr=[[scale * (mean - lo)], [scale * (hi - mean)]],
                        fmt="s", color="black", capsize=4)
        pub = labels.get(n, {}).get("published")
        if isinstance(pub, list):
            ax.errorbar(i - 0.12, scale * np.mean(pub), yerr=scale * (pub[1] - pub[0]) / 2, fmt="*",
                        color="tab:red", ms=10, capsize=4)
        elif pub is not None:
            ax.plot(i - 0.12, scale * pub, "*", color="tab:red", ms=12)
    if r["unit"] == "%":
        ax.set_ylim(-3, 105)
    ax.set_xticks(range(len(names)), [textwrap.fill(labels.get(n, {}).get("label", n), 24)
                                      for n in names], fontsize=7.5)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("percent" if r["unit"] == "%" else r["unit"])
    verdict = verdict_text(r["verdict"]) if r["measured"] else "not measured"
    ax.set_title(f"{r['id']}. {verdict.upper()}: {r['claim']}\n{ours_text(r)}; {r['interval']}"
                 + (f"; all-zero, not drawn: {', '.join(dropped)}" if dropped else ""), fontsize=8)
    _finish(fig)
    return fig
