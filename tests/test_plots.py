"""Every figure's title fits its canvas (reasonlib.report.plots): each figure is rendered and
the extent of every title is checked against the figure's."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from reasonlib.report import findings as F, plots  # noqa: E402
from reasonlib.train.curriculum import Stage  # noqa: E402

LONG = ("a title as long as the ones the notebooks write, naming its seeds, its n per bucket, "
        "its interval and what was left out of it, which is far more than one line can hold")


def _titles_inside(fig) -> list[str]:
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    W, H = fig.canvas.get_width_height()
    texts = [t for ax in fig.axes for t in (ax.title, ax._left_title, ax._right_title)]
    if getattr(fig, "_suptitle", None) is not None:
        texts.append(fig._suptitle)
    bad = []
    for t in texts:
        if not t.get_text():
            continue
        bb = t.get_window_extent(r)
        if bb.x0 < -0.5 or bb.x1 > W + 0.5 or bb.y1 > H + 0.5:
            bad.append(f"{t.get_text()[:60]!r}: x {bb.x0:.0f}..{bb.x1:.0f} of {W}, top {bb.y1:.0f} of {H}")
    plt.close(fig)
    return bad


@pytest.mark.parametrize("fid", [f.id for f in F.FINDINGS])
def test_every_finding_figure_title_fits(fid):
    f = next(x for x in F.FINDINGS if x.id == fid)
    r = F.evaluate(f, F.synthetic(f, [0.1, 0.15, 0.2] if f.kind != "share" else [0.95, 0.5, 0.92]))
    assert not _titles_inside(plots.finding(r, ["seed-0", "seed-1", "seed-2"], []))


def test_the_other_figures_titles_fit():
    curve = [(k, 0.5, 0.4, 0.6) for k in (1, 2, 4, 8)]
    figs = [
        plots.bucket_bars({"control": {"d1": (0.5, 0.4, 0.6)}, "targeted": {"d1": (0.7, 0.6, 0.8)}},
                          "acc", LONG, {"d1": 100}),
        plots.passk_curves({"control": {"general": curve}}, LONG, {"general": 100}),
        plots.headroom_curve({"a": (0.3, 0.8, 0.1, 0.05)}, 8, LONG),
        plots.headroom_seeds([{"seed": "seed-0", "greedy": 0.4, "pass@k": 0.9, "gap": 0.5, "k": 8,
                               "gain_greedy": 0.1}], (0.2, 0.85), LONG),
        plots.length_curves({"rope": [(d, 0.5, 0.4, 0.6, 0.7) for d in (1, 2, 3, 4)]}, 3, 8, LONG),
        plots.length_grids({"control": np.eye(6), "targeted": np.full((6, 6), 0.5),
                            "targeted_v2": np.full((6, 6), np.nan)}, 3, (1, 3), LONG),
        plots.length_grids({"rope": np.eye(6)}, 3, None, LONG),
        plots.transition_curves([{"probe": [(100, 0.2), (200, 0.6), (300, 0.95)], "t50": 200,
                                  "t90": 300}], LONG),
        plots.loss_curves({"control": {"tokens": [1e4, 2e4, 3e4], "loss": [2.0, 1.5, 1.0]}}, LONG),
        plots.probe_curves({"targeted": {"val": [{"tokens": 1e5, "general": 0.2},
                                                 {"tokens": 2e5, "general": 0.6}]}}, ["general"], 100),
        plots.stage_schedule({"targeted": [Stage("one", 0.0, 0.5, (("d1", 1.0),)),
                                           Stage("two", 0.5, 1.0, (("general", 1.0),))]}),
    ]
    bad = [b for fig in figs for b in _titles_inside(fig)]
    assert not bad, bad
