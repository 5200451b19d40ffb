"""Cross-seed summary: per-seed headline metrics, means with t-intervals, and a verdict per
finding of the study we re-create (notebook 08, and the HTML report's index page).

Inputs are the ``metrics.json`` files notebooks 03-07 write under
``<run_root>/seed-*/NN_name/``; nothing is scraped from cell outputs. A notebook whose
metrics are missing or unreadable is reported in ``missing``; a value a present notebook
did not write (e.g. pass@8 when ``ks`` has no 8) is reported in ``missing_values``; both
just leave that seed out of the statistics.

**Statistics.** For a quantity measured once per seed, with n seeds: the mean, the sample
standard deviation and the 95% Student-t interval ``mean ± t(0.975, n-1) · sd / sqrt(n)``.
With n < 2 the interval is undefined (reported as ``n/a``). The interval is over seeds only:
it says how much the number moves when training is repeated, not how many eval problems
there were (each notebook gives Wilson intervals over problems for one seed).

**Verdicts.** Each finding is reduced to one number per seed, and:

* *a > b* findings (targeted beats control on ``low_sum``; targeted pass@8 above control;
  RL raises ``general`` accuracy; targeted + RL beats control + RL; targeted makes fewer
  format failures) use the per-seed paired difference d = a - b, from the seeds that
  measured both:
  **reproduced** if the t-interval of d lies above 0; **not reproduced** if it lies below 0,
  or if n >= 3 and the mean of d is below 0 (the effect points the other way);
  **inconclusive** otherwise, and always when n < 2.
* *stability* (accuracy on ``general`` is the same for beta in {0.02, 0.05, 0.10}) uses the
  per-seed spread s = max - min of greedy ``general`` accuracy over those betas (at least
  two of them must have run): **reproduced** if the interval's upper end is <= STABLE_TOL;
  **not reproduced** if its lower end is > STABLE_TOL, or if n >= 3 and the mean is above
  it; **inconclusive** otherwise (and when n < 2). A model that gets almost nothing right is
  trivially stable, so a small spread counts as reproduced only when the mean accuracy over
  those arms (averaged over seeds) is at least STABLE_MIN_ACC; below it, inconclusive.
* *presence* (targeted SFT still makes digit-substitution and operand-duplication errors on
  mixed-digit prompts) uses, per error class, the per-seed count in the ``mixed`` and
  ``low_sum`` buckets: a class is present if the interval's lower end is > 0, absent if
  n >= 3 and it never occurred in any seed. The finding is **reproduced** if both classes
  are present, **not reproduced** if either is absent, **inconclusive** otherwise.

The verdicts test the *direction* of each finding (is there an effect, with seeds as the
unit of replication); how our numbers compare with the published ones is shown beside them.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from .failures import CLASSES
from .tasks import FORMATS   # the answer formats, in their order (finding 6)
from .tables import table

# The study's published numbers, as fractions. Source: ../shared/seed/000_dec7c5113c451fd3.txt
# (sections "Experimental Evidence: Key Data and Results", "Pass@k Evaluation",
# "KL-Regularized RL" and "Failure Mode Analysis"). The text does not say whether its
# accuracies are greedy or sampled; we compare them with greedy exact match.
PUBLISHED_SOURCE = "../shared/seed/000_dec7c5113c451fd3.txt"
PUBLISHED = {
    "low_sum": {"control": 0.648, "targeted": 0.854},       # low-sum accuracy, control -> targeted
    "pass8": {"control": 0.81, "targeted": 0.99},           # pass@8 of the SFT models
    "rl_general": {"before": 0.807, "after": 0.907},        # targeted SFT -> + KL-RL, general
    "rl_parse_after": 1.0,                                  # "maintaining a 100% parse rate"
    "betas": (0.02, 0.05, 0.10),                            # the beta scan
    "beta_general": (0.914, 0.916),                         # general accuracy range over betas
    "beta_pass8": (0.98, 1.0),                              # pass@8 range over betas
    "failure_examples": {"digit_sub": "12+3 -> 18", "operand_dup": "12+3 -> 123"},
}

NOTEBOOKS = ("01_tokenizer_model", "02_data_curricula", "03_sft", "04_pass_at_k", "05_kl_rl",
             "06_beta_scan", "07_failure_analysis")
ARMS = ("control", "targeted")
SFT_BUCKETS = ("low_sum", "mixed", "general")
MIXED_BUCKETS = ("mixed", "low_sum")       # where the study saw 12+3 -> 18 / 123
# 07's checkpoints: before and after the RL stage, for each curriculum
FAILURE_CHECKPOINTS = ("SFT control", "SFT+RL control", "SFT targeted", "SFT+RL targeted")
FAILURE_CLASSES = CLASSES                    # reasonlib.failures' taxonomy, in its order
TWO_BY_TWO_BUCKETS = ("low_sum", "mixed")   # finding 5: curriculum vs early RL
FORMAT_BUCKETS = ("general", "ood_long")    # finding 6: in distribution, one digit longer
# The goals the issue set for this re-creation (beyond reproducing the direction).
GOALS = {"low_sum_targeted": 0.95, "pass8_targeted": 0.995, "rl_after": 0.95,
         "parse_after": 0.9995, "beta_spread_of_means": 0.01}
# Largest spread (max - min, as a fraction) of general accuracy over the published betas that
# still counts as "stable". The study's own spread is 0.2 points; 5 points is about two
# binomial standard errors of one accuracy on a few hundred eval problems, so a smaller
# spread could not be told apart from eval noise anyway.
STABLE_TOL = 0.05
# Below this mean accuracy (over the published betas and the seeds) "stable" says nothing.
STABLE_MIN_ACC = 0.5
LEVEL = 0.95
VERDICTS = ("reproduced", "not reproduced", "inconclusive")


class SummaryError(ValueError):
    """A run root that cannot be summarised (missing, or no seed folders)."""


# ---- statistics -------------------------------------------------------------------------------
@lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t distribution with ``df`` degrees of freedom, 0.5 <= p < 1.

    The CDF is 0.5 plus the integral of the density from 0 to t (Simpson's rule on a fine
    grid, the density is smooth), inverted by bisection; accurate to ~1e-9, no scipy."""
    if not (0.5 <= p < 1) or df < 1:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and df >= 1, got p={p}, df={df}")
    logc = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(t):
        x = np.linspace(0.0, t, 4001)
        f = np.exp(logc - (df + 1) / 2 * np.log1p(x * x / df))
        h = t / 4000
        return 0.5 + h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def _num(x) -> float | None:
    """A finite float, or None (missing values and NaN are left out of every statistic)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def mean_ci(values, level: float = LEVEL) -> dict:
    """n, mean, sd and the Student-t interval of the mean of ``values`` (None entries are
    dropped). With n < 2, sd, lo and hi are None; with n = 0 the mean is None too."""
    v = [x for x in (_num(x) for x in values) if x is not None]
    n = len(v)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "lo": None, "hi": None}
    mean = float(np.mean(v))
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "lo": None, "hi": None}
    sd = float(np.std(v, ddof=1))
    half = t_quantile((1 + level) / 2, n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half}


def verdict_greater(diffs) -> str:
    """Verdict on "a > b" from per-seed differences d = a - b (rule in the module doc)."""
    s = mean_ci(diffs)
    if s["n"] < 2:
        return "inconclusive"
    if s["lo"] > 0:
        return "reproduced"
    if s["hi"] < 0 or (s["n"] >= 3 and s["mean"] < 0):
        return "not reproduced"
    return "inconclusive"


def verdict_within(spreads, tol: float = STABLE_TOL) -> str:
    """Verdict on "the spread stays within ``tol``" from per-seed spreads."""
    s = mean_ci(spreads)
    if s["n"] < 2:
        return "inconclusive"
    if s["hi"] <= tol:
        return "reproduced"
    if s["lo"] > tol or (s["n"] >= 3 and s["mean"] > tol):
        return "not reproduced"
    return "inconclusive"


def presence(counts) -> str:
    """"present", "absent" or "unclear" for an error class from per-seed counts."""
    s = mean_ci(counts)
    if s["n"] >= 2 and s["lo"] > 0:
        return "present"
    if s["n"] >= 3 and s["mean"] == 0:
        return "absent"
    return "unclear"


def verdict_present(counts_by_class: dict) -> str:
    """Reproduced when every class is present, not reproduced when one is absent."""
    p = [presence(c) for c in counts_by_class.values()]
    if p and all(x == "present" for x in p):
        return "reproduced"
    if "absent" in p:
        return "not reproduced"
    return "inconclusive"


# ---- loading ------------------------------------------------------------------------------------
def _seed_key(p: Path):
    tail = p.name[len("seed-"):]
    return (0, int(tail), "") if tail.isdigit() else (1, 0, tail)


def find_seeds(run_root) -> list[Path]:
    """The ``seed-*`` folders of a run root, in seed order; SummaryError when there are none."""
    root = Path(run_root)
    if not root.is_dir():
        raise SummaryError(f"run root {root} does not exist or is not a folder")
    seeds = sorted((p for p in root.glob("seed-*") if p.is_dir()), key=_seed_key)
    if not seeds:
        raise SummaryError(f"run root {root} holds no seed-* folders: run notebooks 01-07 "
                           f"for at least one seed first")
    return seeds


def load_seed(seed_dir) -> tuple[dict, list[str]]:
    """{notebook: metrics} for one seed folder, and the notebooks whose metrics.json is
    missing or unreadable."""
    got, missing = {}, []
    for nb in NOTEBOOKS:
        f = Path(seed_dir) / nb / "metrics.json"
        try:
            m = json.loads(f.read_text())
            if not isinstance(m, dict):
                raise ValueError("not a mapping")
            got[nb] = m
        except (OSError, ValueError):
            missing.append(nb)
    return got, missing


def _get(d, *path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return _num(d)


def _beta_key(b: float) -> str:
    return f"{b:g}"   # how 06 names its arms


def _metric_info(key: str) -> tuple[str, str, object]:
    """(label, unit, published) of a metric key; published is a float, a (lo, hi) range or None."""
    parts = key.split("/")
    if parts[0] == "sft":
        _, b, c = parts
        pub = PUBLISHED["low_sum"][c] if b == "low_sum" else None
        return f"SFT {c}: greedy acc, {b}", "%", pub
    if parts[0] == "pass8":
        _, b, c = parts
        return f"SFT {c}: pass@8, {b}", "%", PUBLISHED["pass8"][c] if b == "general" else None
    if parts[0] == "rl":
        c, what = parts[1], parts[-1]
        if what == "parse_after":
            return f"SFT+RL {c}: parse rate of samples (in-dist.)", "%", \
                PUBLISHED["rl_parse_after"] if c == "targeted" else None
        if what == "final_kl":
            return f"SFT+RL {c}: exact KL to start, last step", "nats", None
        kind, when = what.rsplit("_", 1)
        stage = "SFT" if when == "before" else "SFT+RL"
        label = {"greedy": "greedy acc", "sampled": "sampled acc", "pass8": "pass@8"}[kind]
        bucket = parts[2] if len(parts) == 4 else "general"
        pub = None
        if c == "targeted" and kind == "greedy" and bucket == "general":
            pub = PUBLISHED["rl_general"][when]
        return f"{stage} {c}: {label}, {bucket} (05)", "%", pub
    if parts[0] == "format":
        _, f, b, what = parts
        return (f"SFT targeted, {f} format: {'greedy acc' if what == 'acc' else 'parse rate'}, "
                f"{b}", "%", None)
    if parts[0] == "beta":
        _, b, what = parts
        published = float(b) in PUBLISHED["betas"]
        if what == "kl":
            return f"beta={b}: exact KL to start", "nats", None
        if what == "greedy":
            return f"beta={b}: greedy acc, general", "%", PUBLISHED["beta_general"] if published else None
        return f"beta={b}: pass@8, general", "%", PUBLISHED["beta_pass8"] if published else None
    if parts[0] == "fail":
        _, ck, cls, where = parts
        what = "wrong answers" if cls == "wrong" else f"{cls} errors"
        return f"{ck}: {what} ({where})", "count", None
    raise KeyError(key)


def seed_metrics(nb: dict) -> dict[str, float | None]:
    """Headline metrics of one seed from its notebooks' metrics ({notebook: metrics.json})."""
    m = {}
    s03 = nb.get("03_sft", {})
    for b in SFT_BUCKETS:
        for c in ARMS:
            m[f"sft/{b}/{c}"] = _get(s03, c, "buckets", b, "acc")
    s04 = nb.get("04_pass_at_k", {})
    for c in ARMS:
        m[f"pass8/general/{c}"] = _get(s04, c, "general", "pass", "8", "value")
    s05 = nb.get("05_kl_rl", {})
    for c in ARMS:
        for stage, when in (("SFT", "before"), ("SFT+RL", "after")):
            m[f"rl/{c}/greedy_{when}"] = _get(s05, f"{c}/{stage}", "general", "acc")
            m[f"rl/{c}/sampled_{when}"] = _get(s05, f"{c}/{stage}", "general", "sampled_acc")
            m[f"rl/{c}/pass8_{when}"] = _get(s05, f"{c}/{stage}", "general", "pass", "8", "value")
        for b in TWO_BY_TWO_BUCKETS:
            for stage, when in (("SFT", "before"), ("SFT+RL", "after")):
                m[f"rl/{c}/{b}/greedy_{when}"] = _get(s05, f"{c}/{stage}", b, "acc")
    fm = s03.get("formats") if isinstance(s03.get("formats"), dict) else None
    # an older 03 without the format comparison reports every format as missing; a run
    # whose `formats` left some out reports only the ones it trained
    for f in (FORMATS if fm is None else [f for f in FORMATS if f in fm]):
        for b in FORMAT_BUCKETS:
            m[f"format/{f}/{b}/acc"] = _get(fm or {}, f, "buckets", b, "acc")
        m[f"format/{f}/ood_long/parse"] = _get(fm or {}, f, "buckets", "ood_long", "parse")
    head = s05.get("headline", {}) if isinstance(s05.get("headline"), dict) else {}
    if head.get("arm") == "targeted":
        m["rl/targeted/parse_after"] = _get(head, "parse_after")
        m["rl/targeted/final_kl"] = _get(head, "final_kl")
    else:
        m["rl/targeted/parse_after"] = m["rl/targeted/final_kl"] = None
    s06 = nb.get("06_beta_scan", {})
    betas = sorted((k for k in s06 if k != "start" and _is_float(k)), key=float)
    for b in betas:
        m[f"beta/{b}/greedy"] = _get(s06, b, "buckets", "general", "acc")
        m[f"beta/{b}/pass8"] = _get(s06, b, "buckets", "general", "pass", "8", "value")
        m[f"beta/{b}/kl"] = _get(s06, b, "kl")
    counts = nb.get("07_failure_analysis", {}).get("counts", {})
    if not isinstance(counts, dict):
        counts = {}
    for ck in FAILURE_CHECKPOINTS:
        rows = {k.split("|", 1)[1]: v for k, v in counts.items()
                if isinstance(k, str) and k.startswith(ck + "|") and isinstance(v, dict)}
        for cls in ("wrong",) + FAILURE_CLASSES:
            vals = [_class_count(rows.get(b), cls) for b in MIXED_BUCKETS if b in rows]
            m[f"fail/{ck}/{cls}/mixed+low_sum"] = (sum(vals) if vals and None not in vals
                                                   else None)
        for cls in ("wrong", "format"):
            vals = [_class_count(v, cls) for v in rows.values()]
            m[f"fail/{ck}/{cls}/all buckets"] = sum(vals) if vals and None not in vals else None
    return m


def _class_count(row, cls: str):
    """Wrong greedy answers of one class in one (checkpoint, bucket) row of 07; "wrong" is
    the sum over every class."""
    if not isinstance(row, dict):
        return None
    if cls == "wrong":
        vals = [_num(row.get(c)) for c in FAILURE_CLASSES]
        return None if None in vals else sum(vals)
    return _get(row, cls)


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


# ---- the summary --------------------------------------------------------------------------------
def _paired(per_seed_a: dict, per_seed_b: dict) -> dict:
    return {s: per_seed_a[s] - per_seed_b[s] for s in per_seed_a
            if per_seed_a.get(s) is not None and per_seed_b.get(s) is not None}


def _fmt(v, unit: str, signed: bool = False) -> str:
    if v is None:
        return "n/a"
    if unit == "%":
        return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"
    if unit == "nats":
        return f"{v:+.4f}" if signed else f"{v:.4f}"
    return f"{v:+.1f}" if signed else f"{v:.1f}"


def _unit_word(unit: str) -> str:
    return {"%": " points", "nats": " nats", "count": ""}[unit]


def _describe(stat: dict, per_seed: dict, unit: str, what: str, signed: bool = True) -> str:
    vals = ", ".join(_fmt(v, unit, signed) for v in per_seed.values())
    if stat["n"] == 0:
        return f"{what}: no seed measured it"
    ivl = ("n/a (needs >= 2 seeds)" if stat["lo"] is None else
           f"[{_fmt(stat['lo'], unit, signed)}, {_fmt(stat['hi'], unit, signed)}]")
    return (f"{what}: mean {_fmt(stat['mean'], unit, signed)}{_unit_word(unit)}, "
            f"95% t-interval {ivl}, n={stat['n']} seed{'s' * (stat['n'] != 1)} "
            f"(per seed: {vals})")


def _finding(fid, claim, published, rule, per_seed, unit, verdict, why, arms, stat=None):
    stat = stat or mean_ci(per_seed.values())
    return {"id": fid, "claim": claim, "published": published, "rule": rule,
            "per_seed": per_seed, "unit": unit, **stat, "verdict": verdict, "why": why,
            "arms": arms}


def _greater_finding(fid, claim, published, a_key, b_key, metrics, what):
    d = _paired(metrics[a_key]["per_seed"], metrics[b_key]["per_seed"]) \
        if a_key in metrics and b_key in metrics else {}
    stat = mean_ci(d.values())
    unit = metrics[a_key]["unit"] if a_key in metrics else "%"
    return _finding(fid, claim, published,
                    "per-seed difference > 0: reproduced if its 95% t-interval lies above 0, "
                    "not reproduced if below 0 (or n >= 3 and mean < 0), else inconclusive",
                    d, unit, verdict_greater(d.values()), _describe(stat, d, unit, what),
                    [b_key, a_key], stat)


def _mean(metrics: dict, key: str):
    return metrics[key]["mean"] if key in metrics else None


def _goal_at_least(metrics: dict, key: str, goal: float):
    """True/False when ``key`` has a mean over seeds, None when nothing measured it."""
    m = _mean(metrics, key)
    return None if m is None else bool(m >= goal)


def _beats(metrics: dict, key: str, published) -> bool | None:
    """'Beat the study': our mean is above its number and the 95% interval says so (its
    lower end is above the published value, or above the top of a published range)."""
    m = metrics.get(key)
    if m is None or published is None or m["n"] == 0:
        return None
    if m["lo"] is None:
        return None
    top = max(published) if isinstance(published, (list, tuple)) else published
    return bool(m["lo"] > top)


def _stat_text(metrics: dict, key: str, unit: str = "%") -> str:
    m = metrics.get(key)
    if m is None or m["n"] == 0:
        return "n/a"
    ivl = "" if m["lo"] is None else f" [{_fmt(m['lo'], unit)}, {_fmt(m['hi'], unit)}]"
    return f"{_fmt(m['mean'], unit)}{ivl}"


def _two_by_two(metrics: dict, seeds: list[str], bucket: str) -> dict:
    """Per seed: the curriculum's effect (targeted SFT - control SFT) minus early RL's effect
    (control SFT+RL - control SFT), on one bucket; > 0 when the curriculum matters more."""
    k = {(c, w): f"rl/{c}/{bucket}/greedy_{w}" for c in ARMS for w in ("before", "after")}
    out = {}
    for s in seeds:
        v = {ck: metrics.get(key, {}).get("per_seed", {}).get(s) for ck, key in k.items()}
        if None in (v[("targeted", "before")], v[("control", "before")], v[("control", "after")]):
            continue
        out[s] = ((v[("targeted", "before")] - v[("control", "before")])
                  - (v[("control", "after")] - v[("control", "before")]))
    return out


def findings(metrics: dict, seeds: list[str]) -> list[dict]:
    """The study's findings (numbered as in the paper-profile issue), each with its verdict,
    the numbers behind it, and where a goal was set, whether it was met."""
    P, G = PUBLISHED, GOALS
    out = []
    # 1 ---------------------------------------------------------------------------------------
    f = _greater_finding(
        "low_sum", "targeted curriculum beats control on low_sum (greedy accuracy, 03)",
        f"{100 * P['low_sum']['control']:.1f}% -> {100 * P['low_sum']['targeted']:.1f}% "
        f"({100 * (P['low_sum']['targeted'] - P['low_sum']['control']):+.1f} points)",
        "sft/low_sum/targeted", "sft/low_sum/control", metrics, "targeted - control")
    f.update(number="1", title="low_sum: targeted vs control SFT", ours=f"control {_stat_text(metrics, 'sft/low_sum/control')}% -> "
                               f"targeted {_stat_text(metrics, 'sft/low_sum/targeted')}%",
             goal=f"targeted >= {100 * G['low_sum_targeted']:.0f}%",
             goal_met=_goal_at_least(metrics, "sft/low_sum/targeted", G["low_sum_targeted"]),
             beat=_beats(metrics, "sft/low_sum/targeted", P["low_sum"]["targeted"]))
    out.append(f)
    # 2 ---------------------------------------------------------------------------------------
    f = _greater_finding(
        "pass8", "targeted SFT has higher pass@8 than control on general (04)",
        f"{100 * P['pass8']['targeted']:.0f}% vs {100 * P['pass8']['control']:.0f}%",
        "pass8/general/targeted", "pass8/general/control", metrics, "targeted - control")
    f.update(number="2", title="pass@8 on general: targeted vs control SFT", ours=f"targeted {_stat_text(metrics, 'pass8/general/targeted')}% vs "
                               f"control {_stat_text(metrics, 'pass8/general/control')}%",
             goal=f"targeted >= {100 * G['pass8_targeted']:.1f}%",
             goal_met=_goal_at_least(metrics, "pass8/general/targeted", G["pass8_targeted"]),
             beat=_beats(metrics, "pass8/general/targeted", P["pass8"]["targeted"]))
    out.append(f)
    # 3 ---------------------------------------------------------------------------------------
    f = _greater_finding(
        "rl_general", "KL-RL raises the targeted model's greedy accuracy on general (05)",
        f"{100 * P['rl_general']['before']:.1f}% -> {100 * P['rl_general']['after']:.1f}%, "
        f"parse rate {100 * P['rl_parse_after']:.0f}%",
        "rl/targeted/greedy_after", "rl/targeted/greedy_before", metrics, "after - before")
    parse = metrics.get("rl/targeted/parse_after", {}).get("per_seed", {})
    parse_ok = (None if not parse else all(v >= G["parse_after"] for v in parse.values()))
    after_ok = _goal_at_least(metrics, "rl/targeted/greedy_after", G["rl_after"])
    gain_ok = None if f["lo"] is None else bool(f["lo"] > 0)
    parts = [after_ok, gain_ok, parse_ok]
    f.update(number="3", title="KL-RL on general (targeted)",
             ours=f"{_stat_text(metrics, 'rl/targeted/greedy_before')}% -> "
                  f"{_stat_text(metrics, 'rl/targeted/greedy_after')}%, parse rate "
                  f"{_stat_text(metrics, 'rl/targeted/parse_after')}%",
             goal=f"after RL >= {100 * G['rl_after']:.0f}% greedy ({_yn(after_ok)}), gain "
                  f"interval above 0 ({_yn(gain_ok)}), parse rate 100% in every seed "
                  f"({_yn(parse_ok)})",
             goal_met=False if False in parts else (None if None in parts else True),
             beat=_beats(metrics, "rl/targeted/greedy_after", P["rl_general"]["after"]))
    out.append(f)
    # 4: beta stability ------------------------------------------------------------------------
    keys = [f"beta/{_beta_key(b)}/greedy" for b in P["betas"]]
    spread = {}
    for s in seeds:
        v = [metrics[k]["per_seed"].get(s) for k in keys if k in metrics]
        v = [x for x in v if x is not None]
        if len(v) >= 2:
            spread[s] = max(v) - min(v)
    stat = mean_ci(spread.values())
    ran = [b for b in P["betas"] if f"beta/{_beta_key(b)}/greedy" in metrics]
    level = mean_ci([np.mean([metrics[k]["per_seed"][s] for k in keys
                              if k in metrics and s in metrics[k]["per_seed"]]) for s in spread])
    verdict = verdict_within(spread.values())
    why = _describe(stat, spread, "%", f"spread over beta in {{{', '.join(f'{b:g}' for b in ran)}}}",
                    signed=False)
    if level["n"]:
        why += f"; mean accuracy over these arms {_fmt(level['mean'], '%')}%"
        if verdict == "reproduced" and level["mean"] < STABLE_MIN_ACC:
            verdict = "inconclusive"
            why += (f", below {100 * STABLE_MIN_ACC:.0f}%: a model that gets little right is "
                    f"trivially stable")
    means = [metrics[k]["mean"] for k in keys if k in metrics and metrics[k]["mean"] is not None]
    spread_of_means = max(means) - min(means) if len(means) >= 2 else None
    why += "; " + _kl_binding(metrics, seeds)
    f = _finding(
        "beta_stable", "general accuracy is stable across beta in {0.02, 0.05, 0.10} (06)",
        f"{100 * P['beta_general'][0]:.1f}-{100 * P['beta_general'][1]:.1f}% "
        f"(spread {100 * (P['beta_general'][1] - P['beta_general'][0]):.1f} points), "
        f"pass@8 {100 * P['beta_pass8'][0]:.0f}-{100 * P['beta_pass8'][1]:.0f}%",
        f"per-seed spread (max - min) <= {100 * STABLE_TOL:.0f} points: reproduced if the 95% "
        f"t-interval's upper end is within it, not reproduced if the lower end is above it "
        f"(or n >= 3 and mean above it), else inconclusive; inconclusive too when the mean "
        f"accuracy of those arms is below {100 * STABLE_MIN_ACC:.0f}%",
        spread, "%", verdict, why, keys, stat)
    f.update(number="4", title="beta scan: stability and KL",
             ours="greedy " + ", ".join(f"beta={_beta_key(b)}: {_stat_text(metrics, k)}%"
                                        for b, k in zip(P["betas"], keys) if k in metrics)
                  + (f"; spread of the means {_fmt(spread_of_means, '%')} points"
                     if spread_of_means is not None else ""),
             goal=f"spread of the means <= {100 * G['beta_spread_of_means']:.0f} point",
             goal_met=None if spread_of_means is None
             else bool(spread_of_means <= G["beta_spread_of_means"] + 1e-12),
             beat=(None if level["lo"] is None else bool(level["lo"] > max(P["beta_general"]))),
             spread_of_means=spread_of_means)
    out.append(f)
    # 5: the 2 x 2, curriculum vs early RL ------------------------------------------------------
    for b in TWO_BY_TWO_BUCKETS:
        d = _two_by_two(metrics, seeds, b)
        st = mean_ci(d.values())
        arms = [f"rl/{c}/{b}/greedy_{w}" for c in ARMS for w in ("before", "after")]
        f = _finding(
            f"curriculum_vs_rl_{b}",
            f"curriculum matters more than early RL on {b}: targeted - control (SFT) exceeds "
            f"what RL adds to control (05)",
            "qualitative: 'curriculum design is far more important than early RL application'",
            "per-seed (targeted SFT - control SFT) - (control SFT+RL - control SFT) > 0: "
            "reproduced if its 95% t-interval lies above 0, not reproduced if below 0 "
            "(or n >= 3 and mean < 0), else inconclusive",
            d, "%", verdict_greater(d.values()),
            _describe(st, d, "%", "curriculum effect - RL effect"), arms, st)
        f.update(number="5", title=f"{b}: curriculum vs early RL (2 x 2)", ours=", ".join(
            f"{c} {'SFT' if w == 'before' else 'SFT+RL'} {_stat_text(metrics, k)}%"
            for (c, w), k in zip([(c, w) for c in ARMS for w in ("before", "after")], arms)
            if k in metrics), goal=None, goal_met=None, beat=None)
        out.append(f)
    # 6: answer formats (beyond the study) --------------------------------------------------------
    f = _greater_finding(
        "formats", "the answer format matters: reversed beats plain on general under the same "
                   "budget (03)",
        "not in the study (beyond it: plain / reversed / scratchpad, and ood_long)",
        "format/reversed/general/acc", "format/plain/general/acc", metrics, "reversed - plain")
    rows = []
    for fm in FORMATS:
        if f"format/{fm}/general/acc" in metrics:
            rows.append(f"{fm} {_stat_text(metrics, f'format/{fm}/general/acc')}% "
                        f"(ood_long {_stat_text(metrics, f'format/{fm}/ood_long/acc')}%)")
    f["why"] += "; general (ood_long) per format: " + ", ".join(rows) if rows else ""
    f.update(number="6", title="answer formats, general and ood_long", ours=", ".join(rows) or "n/a",
             arms=[f"format/{fm}/{b}/acc" for b in FORMAT_BUCKETS for fm in FORMATS],
             goal=None, goal_met=None, beat=None)
    out.append(f)
    # 7: failure taxonomy --------------------------------------------------------------------------
    ck = "SFT targeted"
    per = {cls: metrics.get(f"fail/{ck}/{cls}/mixed+low_sum", {}).get("per_seed", {})
           for cls in ("digit_sub", "operand_dup")}
    per = {cls: {s: v for s, v in d.items() if v is not None} for cls, d in per.items()}
    why = "; ".join(
        _describe(mean_ci(d.values()), d, "count", f"{cls} count", signed=False)
        + f" -> {presence(d.values())}" for cls, d in per.items())
    total = {s: sum(per[c].get(s, 0) for c in per) for s in seeds
             if all(s in per[c] for c in per)}
    f = _finding(
        "failure_classes",
        "targeted SFT still makes digit-substitution and operand-duplication errors on "
        "mixed-digit prompts (07)",
        f"qualitative: {P['failure_examples']['digit_sub']} (digit substitution), "
        f"{P['failure_examples']['operand_dup']} (operand duplication)",
        "per class, count in mixed+low_sum: present if the 95% t-interval's lower end is > 0, "
        "absent if n >= 3 and it never occurs; reproduced if both present, not reproduced if "
        "one is absent, else inconclusive",
        total, "count", verdict_present({c: list(d.values()) for c, d in per.items()}), why,
        [f"fail/{c}/{cls}/mixed+low_sum" for cls in ("digit_sub", "operand_dup")
         for c in FAILURE_CHECKPOINTS])
    f.update(number="7", title="12+3-style errors, before and after each stage",
             ours="12+3-style errors (digit_sub + operand_dup) in mixed+low_sum, mean "
                              "per seed: " + ", ".join(
                                  f"{c} {_sum_means(metrics, c)}" for c in FAILURE_CHECKPOINTS),
             goal=None, goal_met=None, beat=None)
    out.append(f)
    f = _greater_finding(
        "format_fixed", "targeted SFT makes fewer format failures than control (07)",
        "qualitative: 'targeted SFT fixes the format corruption issue of the old curriculum'",
        "fail/SFT control/format/all buckets", "fail/SFT targeted/format/all buckets", metrics,
        "control - targeted format failures")
    f["arms"] = f["arms"][::-1]
    f.update(number="7", title="format failures: control vs targeted SFT",
             ours=f"format failures, all buckets: control "
                              f"{_stat_text(metrics, 'fail/SFT control/format/all buckets', 'count')}"
                              f", targeted "
                              f"{_stat_text(metrics, 'fail/SFT targeted/format/all buckets', 'count')}",
             goal=None, goal_met=None, beat=None)
    out.append(f)
    return out


def _yn(x) -> str:
    return "n/a" if x is None else ("yes" if x else "no")


def _sum_means(metrics: dict, ck: str) -> str:
    vals = [_mean(metrics, f"fail/{ck}/{cls}/mixed+low_sum") for cls in ("digit_sub", "operand_dup")]
    return "n/a" if None in vals else f"{sum(vals):.1f}"


def _kl_binding(metrics: dict, seeds: list[str]) -> str:
    """Exact KL to the start per beta, and whether the KL term binds: does a beta > 0 arm
    end measurably closer to the start than the beta = 0 arm (paired over seeds)?"""
    betas = sorted({k.split("/")[1] for k in metrics if k.startswith("beta/") and k.endswith("/kl")},
                   key=float)
    if not betas:
        return "no KL measured"
    parts = [f"beta={b}: {_stat_text(metrics, f'beta/{b}/kl', 'nats')}" for b in betas]
    text = "exact KL to the start (nats/token) " + ", ".join(parts)
    if "0" in betas:
        ref = metrics["beta/0/kl"]["per_seed"]
        binds = []
        for b in betas:
            if b == "0":
                continue
            d = _paired(ref, metrics[f"beta/{b}/kl"]["per_seed"])
            v = verdict_greater(d.values())
            binds.append(f"beta={b} " + {"reproduced": "binds", "not reproduced": "does not bind",
                                         "inconclusive": "unclear"}[v])
        text += "; KL(beta=0) - KL(beta) > 0 over seeds: " + ", ".join(binds)
    return text


def summarize(run_root) -> dict:
    """Everything notebook 08 shows and writes: seeds, missing inputs, per-metric per-seed
    values with mean and t-interval, and the findings with verdicts (JSON-able)."""
    seed_dirs = find_seeds(run_root)
    seeds = [p.name for p in seed_dirs]
    missing, missing_values, per_seed = {}, {}, {}
    for p in seed_dirs:
        nb, miss = load_seed(p)
        if miss:
            missing[p.name] = miss
        vals = seed_metrics(nb)
        absent = [k for k, v in vals.items() if v is None and _notebook_of(k) in nb]
        if absent:
            missing_values[p.name] = absent
        per_seed[p.name] = vals
    keys = list(dict.fromkeys(k for s in seeds for k in per_seed[s]))
    keys = _order(keys)
    metrics = {}
    for k in keys:
        label, unit, pub = _metric_info(k)
        ps = {s: per_seed[s].get(k) for s in seeds if per_seed[s].get(k) is not None}
        metrics[k] = {"label": label, "unit": unit, "headline": _is_headline(k, pub),
                      "published": list(pub) if isinstance(pub, tuple) else pub,
                      "per_seed": ps, **mean_ci(ps.values())}
    return {"run_root": str(run_root), "seeds": seeds, "n_seeds": len(seeds),
            "missing": missing, "missing_values": missing_values, "level": LEVEL,
            "published_source": PUBLISHED_SOURCE, "stable_tol": STABLE_TOL,
            "metrics": metrics, "order": list(metrics), "findings": findings(metrics, seeds)}


HEADLINE = {"sft/mixed/control", "sft/mixed/targeted", "sft/general/control", "sft/general/targeted",
            "rl/targeted/sampled_before", "rl/targeted/sampled_after", "rl/control/greedy_after",
            "fail/SFT targeted/digit_sub/mixed+low_sum", "fail/SFT targeted/operand_dup/mixed+low_sum",
            "fail/SFT control/format/all buckets", "fail/SFT targeted/format/all buckets",
            *(f"rl/{c}/{b}/greedy_{w}" for c in ARMS for b in TWO_BY_TWO_BUCKETS
              for w in ("before", "after")),
            *(f"format/{f}/{b}/acc" for f in FORMATS for b in FORMAT_BUCKETS)}


def _is_headline(key: str, published) -> bool:
    """Rows of the short table: every published number, what the findings compare, and
    the KL each beta arm paid."""
    return published is not None or key in HEADLINE or (key.startswith("beta/") and
                                                         key.endswith(("/greedy", "/kl")))


def _notebook_of(key: str) -> str:
    return {"sft": "03_sft", "format": "03_sft", "pass8": "04_pass_at_k", "rl": "05_kl_rl",
            "beta": "06_beta_scan", "fail": "07_failure_analysis"}[key.split("/")[0]]


def _order(keys):
    first = {"sft": 0, "format": 1, "pass8": 2, "rl": 3, "beta": 4, "fail": 5}
    def k(key):
        p = key.split("/")
        return (first[p[0]], float(p[1]) if p[0] == "beta" else 0, keys.index(key))
    return sorted(keys, key=k)


# ---- text tables ----------------------------------------------------------------------------------
def fmt_published(pub, unit: str) -> str:
    if pub is None:
        return ""
    if isinstance(pub, (list, tuple)):
        return f"{_fmt(pub[0], unit)}-{_fmt(pub[1], unit)}"
    return _fmt(pub, unit)


def fmt_interval(m: dict) -> str:
    return "n/a" if m["lo"] is None else f"[{_fmt(m['lo'], m['unit'])}, {_fmt(m['hi'], m['unit'])}]"


def headline_rows(s: dict, only_headline: bool = True) -> list[list[str]]:
    """[measure, unit, published, mean, 95% interval, n seeds, per seed] per metric (accuracies
    in percent, failures as counts, KL in nats); the short list unless ``only_headline``
    is False."""
    rows = []
    # metrics.json is written with sorted keys: the intended order is kept in "order"
    for k in s.get("order") or list(s["metrics"]):
        m = s["metrics"][k]
        if only_headline and not m.get("headline", True):
            continue
        u = m["unit"]
        per = [m["per_seed"][x] for x in s["seeds"] if x in m["per_seed"]]
        rows.append([m["label"], u, fmt_published(m["published"], u), _fmt(m["mean"], u),
                     fmt_interval(m), str(m["n"]), ", ".join(_fmt(v, u) for v in per)])
    return rows


HEADLINE_HEADERS = ["measure", "unit", "published", "mean", "95% t-interval", "n", "per seed"]


def format_headline(s: dict, only_headline: bool = True) -> str:
    return table(headline_rows(s, only_headline), HEADLINE_HEADERS)


def format_findings(s: dict) -> str:
    out = []
    for f in s["findings"]:
        text = (f"{f.get('number', '?')}. [{f['verdict'].upper()}] {f['claim']}\n"
                f"    published: {f['published']}\n    ours: {f['why']}")
        if f.get("goal"):
            text += f"\n    goal: {f['goal']} -> {_goal_word(f.get('goal_met'))}"
        if f.get("beat") is not None:
            text += f"\n    beats the study's number (interval above it): {_yn(f['beat'])}"
        out.append(text)
    return "\n".join(out)


def _goal_word(met) -> str:
    return {True: "met", False: "NOT met", None: "n/a"}[met]


FINDING_HEADERS = ["#", "finding", "study", "ours: mean [95% t-interval over seeds]", "n",
                   "verdict", "goal"]


def goal_text(f: dict) -> str:
    """A finding's goal with whether it was met, and whether we beat the study's number."""
    goal = "" if not f.get("goal") else f"{f['goal']}: {_goal_word(f.get('goal_met'))}"
    if f.get("beat") is not None:
        goal += ("; " if goal else "") + ("beats the study" if f["beat"]
                                         else "does not beat the study")
    return goal


def findings_rows(s: dict) -> list[list[str]]:
    """One row per finding: number, short title, the study's numbers, ours, seeds, verdict,
    and the goal (``goal_text``)."""
    return [[f.get("number", ""), f.get("title") or f["claim"], f["published"],
             f.get("ours") or f["why"], str(f["n"]), f["verdict"], goal_text(f)]
            for f in s["findings"]]


def format_findings_table(s: dict) -> str:
    """The findings at a glance, one block per finding (the fields are too long for columns)."""
    out = []
    for r in findings_rows(s):
        out.append(f"{r[0]}. {r[1]}  [{r[5]}, n={r[4]}]\n    study: {r[2]}\n    ours:  {r[3]}"
                   + (f"\n    goal:  {r[6]}" if r[6] else ""))
    return "\n".join(out)


TAXONOMY_HEADERS = ["checkpoint", "wrong (all buckets)", "wrong (mixed+low_sum)",
                    *FAILURE_CLASSES]


def taxonomy_means(s: dict) -> list[tuple[str, list[float | None]]]:
    """Finding 7's numbers: per checkpoint (before and after RL, each curriculum), the mean
    over seeds of wrong greedy answers in all buckets and in mixed+low_sum, then per class
    in mixed+low_sum (where the study's 12+3 -> 18 / 123 cases live); None if unmeasured."""
    def mean(key):
        m = s["metrics"].get(key)
        return None if m is None else m["mean"]
    return [(ck, [mean(f"fail/{ck}/wrong/all buckets"), mean(f"fail/{ck}/wrong/mixed+low_sum"),
                  *[mean(f"fail/{ck}/{c}/mixed+low_sum") for c in FAILURE_CLASSES]])
            for ck in FAILURE_CHECKPOINTS]


def taxonomy_rows(s: dict) -> list[list[str]]:
    """``taxonomy_means`` as table rows (one decimal, n/a where unmeasured)."""
    return [[ck, *("n/a" if v is None else f"{v:.1f}" for v in vals)]
            for ck, vals in taxonomy_means(s)]


def format_taxonomy(s: dict) -> str:
    return table(taxonomy_rows(s), TAXONOMY_HEADERS)


def format_missing(s: dict) -> str:
    lines = [f"{s['n_seeds']} seed folder(s): {', '.join(s['seeds'])}"]
    for seed, nbs in s["missing"].items():
        lines.append(f"{seed}: no metrics from {', '.join(nbs)}")
    for seed, keys in s["missing_values"].items():
        lines.append(f"{seed}: metrics present but without {', '.join(keys)}")
    if not s["missing"] and not s["missing_values"]:
        lines.append("every seed has the metrics of notebooks " + ", ".join(n[:2] for n in NOTEBOOKS))
    return "\n".join(lines)
