"""The findings as data, and the one function that evaluates them.

A :class:`Finding` names the records it reads (flat names a notebook writes, see
:mod:`reasonlib.study.records`), how they make one quantity per seed (a weighted sum, a spread, or
"did this seed get there"), the claim's threshold and the rule that turns an interval into a
verdict. :func:`evaluate` is the only code that computes a verdict: notebook 09 and the report
call it on every seed, each notebook calls it on its own seed ("this seed only").

**Intervals** (never outside the quantity's range, :mod:`reasonlib.core.stats`):

* 2 or more seeds: percentile bootstrap over seeds of the mean of the per-seed quantity
  (every resample enumerated for up to 6 seeds); for "k of n seeds got there", the exact
  binomial (Clopper-Pearson) interval of the share.
* 1 seed: the same quantity computed on the eval problems, with a percentile bootstrap over
  problems (the models of a notebook are scored on the same problems, so differences are
  paired). Labelled "this seed only": it says how sure we are about this seed's models, not
  how the result moves when everything is retrained with another seed.

**The verdict rule**, the same for every finding (:meth:`Rule.verdict`): *reproduced* when the
95% interval lies entirely on the claim's side of the threshold, *not reproduced* when it lies
entirely on the other side, *inconclusive* when it contains the threshold (or a guard says the
measurement cannot speak, e.g. stability of a model that gets almost nothing right).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..study import lengths
from ..core import stats
from ..study.records import PER_PROBLEM, RecordError, vector

VERDICTS = ("reproduced", "not reproduced", "inconclusive")


@dataclass(frozen=True)
class Rule:
    """The claim ``quantity > threshold`` (``above``) or ``quantity <= threshold`` (``at_most``)."""
    kind: str = "above"
    threshold: float = 0.0

    def verdict(self, lo: float, hi: float) -> str:
        t = self.threshold
        if self.kind == "above":
            return "reproduced" if lo > t else "not reproduced" if hi < t else "inconclusive"
        if self.kind == "at_most":
            return "reproduced" if hi <= t else "not reproduced" if lo > t else "inconclusive"
        raise ValueError(f"unknown rule kind {self.kind!r}")

    def text(self, what: str, unit: str, points: bool = True) -> str:
        t = threshold_text(self.threshold, unit, points)
        if self.kind == "above":
            return (f"reproduced if the 95% interval of {what} lies above {t}; not reproduced if "
                    f"it lies below {t}; inconclusive if it contains {t}")
        return (f"reproduced if the 95% interval of {what} lies at or below {t}; not reproduced "
                f"if it lies above {t}; inconclusive if it contains {t}")


@dataclass(frozen=True)
class Finding:
    """One claim, as data. ``terms`` are (record name, weight); ``kind`` says how a seed's
    values make its quantity: ``linear`` (the weighted sum), ``spread`` (max - min of the
    records) or ``share`` (1 if the first record reaches ``reach``; across seeds, the share
    of seeds that did). Record names may hold ``{beta_max}``, filled from the notebook's
    ``betas`` parameter."""
    id: str
    number: str
    title: str
    claim: str
    study: str
    notebook: str
    terms: tuple
    what: str
    rule: Rule = Rule()
    kind: str = "linear"
    unit: str = "%"                 # "%" (fractions, shown in percent or points) or "nats"
    needs: tuple = ()               # (parameter, value) the notebook must have run with
    goal: tuple | None = None       # (record name, minimum, words)
    study_value: tuple | None = None  # (record name, published, words): "beats the study" when
    #                                   the 95% interval of that record's level lies above it
    guard: tuple | None = None      # (record names, minimum mean, words): else inconclusive
    reach: float | None = None      # kind "share": the level a seed must reach
    shares: float = 0.5             # kind "share": the claim is share of seeds > this
    undefined: str = ""             # why a seed's records can be None (e.g. nothing to pool)
    yes: str = ""                   # what a reproduced verdict means, in a sentence
    no: str = ""                    # what a not-reproduced verdict means


# ---- formatting ---------------------------------------------------------------------------------
def seed_order(d: dict) -> list:
    """The values of a {seed name: value} mapping in seed order (seed-2 before seed-10), also
    after a JSON round trip sorted the keys as text."""
    def key(s):
        tail = str(s).removeprefix("seed-")
        return (0, int(tail), "") if tail.isdigit() else (1, 0, str(s))
    return [d[k] for k in sorted(d, key=key)]


def fmt_value(v, unit: str, signed: bool = False) -> str:
    if v is None:
        return "n/a"
    if unit == "%":
        return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def unit_word(unit: str, signed: bool) -> str:
    return {"%": " points" if signed else "%", "nats": " nats/token"}.get(unit, "")


def threshold_text(t: float, unit: str, points: bool) -> str:
    """A threshold in words: '0', '2.0 points' (a difference or spread), '90.0%' (a level)."""
    return "0" if t == 0 else fmt_value(t, unit) + unit_word(unit, points)


def is_points(f: "Finding") -> bool:
    """Whether the quantity is a difference or spread of percentages (shown in points)."""
    return f.kind == "spread" or (f.kind == "linear" and any(w < 0 for _, w in f.terms))


def fmt_interval(lo, hi, unit: str, signed: bool = False) -> str:
    if lo is None:
        return "n/a"
    return f"[{fmt_value(lo, unit, signed)}, {fmt_value(hi, unit, signed)}]"


# ---- evaluation ---------------------------------------------------------------------------------
def _names(f: Finding, params: dict) -> list[str]:
    betas = params.get("betas") or []
    fill = {"beta_max": f"{max(betas):g}" if betas else "?",
            "len_d1": lengths.name(lengths.longest_trained(params.get("max_digits", 3)) + 1)}
    return [name.format(**fill) for name, _ in f.terms]


def _weights(f: Finding) -> np.ndarray:
    return np.array([w for _, w in f.terms], dtype=np.float64)


def quantity_range(f: Finding) -> tuple[float, float]:
    """The values the quantity can take: a weighted sum of fractions, a spread of fractions,
    a share; KL differences are unbounded."""
    if f.kind in ("spread", "share"):
        return (0.0, 1.0)
    if f.unit != "%":
        w = _weights(f)
        return (float(-np.inf) if (w < 0).any() else 0.0, float(np.inf))
    w = _weights(f)
    return (float(w[w < 0].sum()), float(w[w > 0].sum()))


def _stat(f: Finding):
    """The quantity as a function of the records' means, (B, m) -> (B,)."""
    if f.kind == "linear":
        w = _weights(f)
        return lambda m: m @ w
    if f.kind == "spread":
        return lambda m: m.max(axis=1) - m.min(axis=1)
    if f.kind == "share":
        return lambda m: m[:, 0]
    raise ValueError(f"unknown finding kind {f.kind!r}")


def _per_seed(f: Finding, row: list[float]) -> float:
    v = np.asarray(row, dtype=np.float64)
    if f.kind == "share":
        return float(v[0] >= f.reach)
    return float(_stat(f)(v[None])[0])


def _measured(f: Finding, nb: dict) -> str | None:
    """Why a present notebook did not measure ``f`` (its parameters left it out), or None."""
    params = nb.get("params", {})
    for key, value in f.needs:
        have = params.get(key)
        if have is None:
            continue
        if value not in have:
            return f"{nb['notebook']} ran without {key} {value!r}"
    return None


def evaluate(f: Finding, seeds: dict[str, dict]) -> dict:
    """The finding over ``{seed: metrics file of f.notebook}`` (None where a seed lacks it):
    per-seed quantity, interval, verdict and rule, goal, whether it beats the study, and a few
    generated sentences. JSON-able."""
    have = {s: nb for s, nb in seeds.items() if nb is not None}
    out = {"id": f.id, "number": f.number, "title": f.title, "claim": f.claim, "study": f.study,
           "notebook": f.notebook, "what": f.what, "unit": f.unit, "kind": f.kind,
           "rule": _rule_text(f), "range": list(quantity_range(f)),
           "missing_seeds": sorted(s for s in seeds if seeds[s] is None),
           "per_seed": {}, "parts": {}, "n": 0, "point": None, "lo": None, "hi": None,
           "interval": "", "verdict": "inconclusive", "measured": True, "why": "",
           "goal": None, "goal_met": None, "beats": None, "study_level": None}
    skipped = {s: r for s, nb in have.items() if (r := _measured(f, nb))}
    if skipped and len(skipped) == len(have):
        out.update(measured=False, why="not measured: " + next(iter(skipped.values())))
        out["sentences"] = [f"Not measured in this run ({out['why'][len('not measured: '):]})."]
        return out
    have = {s: nb for s, nb in have.items() if s not in skipped}
    if not have:
        out.update(measured=False, why="not measured: no seed has the metrics of " + f.notebook)
        out["sentences"] = [f"Not measured: no seed has the metrics of {f.notebook}."]
        return out
    rows = {}
    for s, nb in have.items():
        names = _names(f, nb.get("params", {}))
        rec = nb["records"]
        absent = [n for n in names if n not in rec]
        if absent:
            raise RecordError(f"finding {f.id}: {nb['notebook']} of {s} wrote no record "
                              f"{absent[0]!r} (renamed?); it has e.g. "
                              f"{', '.join(sorted(rec)[:3])}")
        vals = [rec[n] for n in names]
        if any(v is None for v in vals):   # a record that could not be computed (e.g. NaN)
            continue
        rows[s] = vals
        for n, v in zip(names, vals):
            out["parts"].setdefault(n, {})[s] = v
    out["per_seed"] = {s: _per_seed(f, r) for s, r in rows.items()}
    out["n"] = n = len(rows)
    if n == 0:
        out["why"] = "every seed's records are undefined"
    elif n == 1:
        _one_seed(f, next(iter(have[s] for s in rows)), out)
    else:
        q = np.array(list(out["per_seed"].values()))
        if f.kind == "share":
            k = int(q.sum())
            lo, hi = stats.clopper_pearson(k, n)
            out.update(point=k / n, lo=lo, hi=hi, k=k,
                       interval=f"exact binomial 95% interval over {n} seeds")
        else:
            point, lo, hi = stats.mean_interval(q)
            out.update(point=point, lo=lo, hi=hi,
                       interval=f"95% percentile bootstrap over {n} seeds")
    if out["lo"] is not None:
        rule = _rule(f, n)
        out["verdict"] = rule.verdict(out["lo"], out["hi"])
        _guard(f, rows, have, out)
    _goal_and_study(f, rows, have, out)
    out["sentences"] = sentences(f, out)
    return out


def _rule(f: Finding, n: int) -> Rule:
    if f.kind == "share":
        return Rule("above", f.shares) if n > 1 else Rule("above", f.reach)
    return f.rule


def _rule_text(f: Finding) -> str:
    if f.kind == "share":
        return (f"across seeds: reproduced if the exact 95% interval of the share of seeds with "
                f"{f.what} >= {fmt_value(f.reach, f.unit)}{unit_word(f.unit, False)} lies above "
                f"{f.shares:.0%}, not reproduced if below, else inconclusive; one seed: "
                + Rule("above", f.reach).text(f.what, f.unit, points=False))
    text = f.rule.text(f.what, f.unit, points=is_points(f))
    if f.guard:
        text += f"; inconclusive too when {f.guard[2]}"
    return text


def _one_seed(f: Finding, nb: dict, out: dict) -> None:
    names = _names(f, nb.get("params", {}))
    rec = nb["records"]
    cols = []
    for n in names:
        if n + PER_PROBLEM not in rec:
            raise RecordError(f"finding {f.id}: {nb['notebook']} wrote {n!r} but not its "
                              f"per-problem vector {n + PER_PROBLEM!r}")
        cols.append(vector(rec[n + PER_PROBLEM]))
    lens = {len(c) for c in cols}
    if len(lens) != 1:
        raise RecordError(f"finding {f.id}: the per-problem vectors of {names} have different "
                          f"lengths {sorted(lens)}: they are not scored on the same problems")
    m = np.column_stack(cols)
    m = m[~np.isnan(m).any(axis=1)]
    _, lo, hi = stats.bootstrap(m, _stat(f))
    # the point is the quantity of the seed's own records (the vectors are rounded floats)
    vals = np.array([rec[n] for n in names], dtype=np.float64)
    point = float(_stat(f)(vals[None])[0])
    out.update(point=point, lo=min(lo, point), hi=max(hi, point), n_problems=len(m),
               interval=f"this seed only: 95% percentile bootstrap over its {len(m)} eval problems")


def _guard(f: Finding, rows: dict, have: dict, out: dict) -> None:
    if not f.guard or out["verdict"] != "reproduced":
        return
    names, minimum, words = f.guard
    level = np.mean([np.mean([have[s]["records"][n] for n in names]) for s in rows])
    if level < minimum:
        out["verdict"] = "inconclusive"
        out["why"] = f"{words} (mean {fmt_value(level, '%')}%)"


def _goal_and_study(f: Finding, rows: dict, have: dict, out: dict) -> None:
    if f.goal:
        name, minimum, words = f.goal
        v = [have[s]["records"].get(name) for s in rows]
        v = [x for x in v if x is not None]
        out["goal"] = words
        out["goal_met"] = None if not v else bool(np.mean(v) >= minimum)
    if f.study_value and rows:
        # the study publishes a level (e.g. 85.4% after its targeted SFT), not a difference:
        # what is compared with it is the interval of our level, not of the finding's quantity
        name, published, words = f.study_value
        v = [have[s]["records"][name] for s in rows]
        if len(v) > 1:
            point, lo, hi = stats.mean_interval(v)
        else:
            nb = next(iter(have[s] for s in rows))
            vec = vector(nb["records"][name + PER_PROBLEM]) if name + PER_PROBLEM in nb["records"] else None
            point = v[0]
            lo, hi = (None, None) if vec is None else stats.mean_interval(vec[~np.isnan(vec)])[1:]
        if lo is not None:
            out["beats"] = bool(lo > published)
            out["study_level"] = {"what": words, "published": published, "point": float(point),
                                  "lo": float(min(lo, point)), "hi": float(max(hi, point))}


# ---- words ----------------------------------------------------------------------------------------
def level_text(r: dict) -> str:
    """Our level against the study's published one, with the level's own interval, e.g.
    "Ours, targeted greedy accuracy on held-out low_sum: 98.2% [97.0, 99.1], above the study's
    85.4%" (above = the whole 95% interval; the finding's own interval is of a difference)."""
    lv = r["study_level"]
    side = "above" if r["beats"] else "not above"
    return f"Ours, {lv['what']}: {level_value(lv)}, {side} the study's {fmt_value(lv['published'], '%')}%"


def level_value(lv: dict) -> str:
    """Our level of a ``study_level`` with its interval: "98.2% [97.0, 99.1]"."""
    return f"{fmt_value(lv['point'], '%')}% {fmt_interval(lv['lo'], lv['hi'], '%')}"


def sentences(f: Finding, r: dict) -> list[str]:
    """Two or three sentences on what a result means, generated from its numbers."""
    if not r["measured"]:
        return [f"Not measured ({r['why']})."]
    if r["n"] == 0:
        return [f"No seed measured it ({f.undefined or 'every record it reads is undefined'})."]
    signed = f.kind == "linear" and any(w < 0 for _, w in f.terms)
    points = is_points(f)
    u = f.unit
    out = []
    if f.kind == "share" and r["n"] > 1:
        name = _names(f, {})[0]
        missed = [f"{s} ({fmt_value(r['parts'][name][s], u)}{unit_word(u, False)})"
                  for s, hit in r["per_seed"].items() if not hit]
        out.append(f"{r['k']} of {r['n']} seeds reached {f.what} >= {fmt_value(f.reach, u)}"
                   f"{unit_word(u, False)} (share {r['point']:.0%}, {r['interval']} "
                   f"[{r['lo']:.0%}, {r['hi']:.0%}])"
                   + (f"; below it: {', '.join(missed)}." if missed else "."))
    else:
        what = f.what if f.kind != "share" else f.what
        point = fmt_value(r["point"], u, signed) + unit_word(u, points)
        ivl = fmt_interval(r["lo"], r["hi"], u, signed)
        if r["n"] == 1:
            out.append(f"On this seed, {what} is {point} {ivl} ({r['interval']}).")
        else:
            vals = list(r["per_seed"].values())
            side = sum(v > f.rule.threshold for v in vals) if f.rule.kind == "above" else \
                sum(v <= f.rule.threshold for v in vals)
            out.append(f"Over {r['n']} seeds, {what} is {point} on average {ivl} "
                       f"({r['interval']}); per seed {fmt_value(min(vals), u, signed)} to "
                       f"{fmt_value(max(vals), u, signed)}, {side} of {r['n']} on the claim's side.")
    study = f"The study: {f.study}."
    if r.get("beats") is not None:
        study += " " + level_text(r) + "."
    if r.get("goal"):
        study += f" Goal ({r['goal']}): {'met' if r['goal_met'] else 'not met'}."
    out.append(study)
    v = r["verdict"]
    one_share = f.kind == "share" and r["n"] == 1   # one seed says whether it got there, not how often
    if v == "reproduced":
        out.append("This seed got there." if one_share else f.yes or "The claim holds here.")
    elif v == "not reproduced":
        out.append("This seed did not get there." if one_share else
                   f.no or "The claim does not hold here: the interval lies on the other side.")
    else:
        out.append(r["why"].capitalize() + "." if r["why"] else
                   f"The interval contains {threshold_text(_rule(f, r['n']).threshold, u, points and f.kind != 'share')}: these "
                   f"{'problems' if r['n'] == 1 else 'seeds'} cannot tell"
                   f"{'; more seeds would' if r['n'] > 1 else ''}.")
    return out


# ---- the catalogue ------------------------------------------------------------------------------
# The study's claims (summary.PUBLISHED_SOURCE) and ours beyond it. The study
# does not say whether its accuracies are greedy or sampled; we compare greedy exact match.
# Every bucket is measured on its held-out problems (tasks.train_exclusions).
ARMS = ("control", "targeted")
STUDY_BETAS = (0.02, 0.05, 0.1)
STABLE_TOL = 0.02        # "stable": the spread over the study's betas is at most 2 points
STABLE_MIN_ACC = 0.5     # below this mean accuracy, stability says nothing
TRANSITION = 0.9         # the 3-digit transition happened: targeted general >= 90% greedy
LENGTH_REACH = 0.9       # a length "is added": greedy >= 90%
HEADROOM = (0.2, 0.85)   # starts "with headroom": greedy general in [20%, 85%] (05 pools them)
HEADROOM_GAIN = 0.10     # the RL issue's goal for them: +10 points of greedy general


def _vs(a: str, b: str) -> tuple:
    return ((a, 1.0), (b, -1.0))


FINDINGS = (
    Finding("1a", "1", "low_sum: targeted vs control SFT",
            "the targeted curriculum beats the control curriculum on held-out low_sum problems",
            "64.8% -> 85.4% (control -> targeted)", "03_sft",
            _vs("sft/targeted/low_sum/acc", "sft/control/low_sum/acc"),
            "targeted - control greedy accuracy on held-out low_sum",
            needs=(("curricula", "targeted"), ("curricula", "control"), ("buckets", "low_sum")),
            goal=("sft/targeted/low_sum/acc", 0.95, "targeted >= 95% on held-out low_sum"),
            study_value=("sft/targeted/low_sum/acc", 0.854,
                         "targeted greedy accuracy on held-out low_sum"),
            yes="The mixed stage teaches problems training never showed: a skill, not a memory.",
            no="On problems it never saw, the targeted curriculum does worse than the control."),
    Finding("1b", "1", "mixed: targeted vs control SFT",
            "the targeted curriculum beats the control curriculum on held-out mixed problems",
            "not reported separately (low_sum is the study's mixed-digit measure)", "03_sft",
            _vs("sft/targeted/mixed/acc", "sft/control/mixed/acc"),
            "targeted - control greedy accuracy on held-out mixed",
            needs=(("curricula", "targeted"), ("curricula", "control"), ("buckets", "mixed")),
            yes="The blind spot for mixed lengths closes on unseen problems too.",
            no="On unseen mixed problems, the control curriculum does better."),
    Finding("2", "2", "pass@8 on general: targeted vs control SFT",
            "the targeted SFT model has a higher pass@8 on general than the control model",
            "99% vs 81% (targeted vs control)", "04_pass_at_k",
            _vs("passk/targeted/general/pass@8", "passk/control/general/pass@8"),
            "targeted - control pass@8 on general",
            needs=(("curricula", "targeted"), ("curricula", "control"), ("buckets", "general"),
                   ("ks", 8)),
            goal=("passk/targeted/general/pass@8", 0.995, "targeted pass@8 >= 99.5%"),
            study_value=("passk/targeted/general/pass@8", 0.99, "targeted pass@8 on general"),
            yes="The targeted model puts a correct answer among 8 samples more often.",
            no="The control model's samples find the right sum more often."),
    Finding("3", "3", "KL-RL on general (targeted start)",
            "KL-regularized RL raises the targeted SFT model's greedy accuracy on general",
            "80.7% -> 90.7%, parse rate 100%", "05_kl_rl",
            _vs("rl/targeted/rl/general/acc", "rl/targeted/sft/general/acc"),
            "after RL - before RL greedy accuracy on general",
            needs=(("curricula", "targeted"), ("buckets", "general")),
            goal=("rl/targeted/rl/general/acc", 0.95, "after RL >= 95% greedy"),
            study_value=("rl/targeted/rl/general/acc", 0.907,
                         "after-RL greedy accuracy on general"),
            yes="RL adds accuracy on top of SFT.",
            no="RL costs accuracy on general."),
    Finding("3b", "3", "KL-RL from starts with headroom",
            f"from the SFT starts whose greedy general lies in [{HEADROOM[0]:.0%}, "
            f"{HEADROOM[1]:.0%}] (checkpoints along the targeted schedule, the finished arms), RL "
            f"raises greedy accuracy on general", "not in the study (its RL start was at 80.7%)",
            "05_kl_rl", _vs("headroom/band/rl/general/acc", "headroom/band/start/general/acc"),
            "after RL - before RL greedy accuracy on general, pooled over the starts with headroom",
            needs=(("curricula", "targeted"),),
            undefined=f"no RL start had greedy general in [{HEADROOM[0]:.0%}, {HEADROOM[1]:.0%}]",
            goal=("headroom/band/gain", HEADROOM_GAIN,
                  f"RL gains >= {100 * HEADROOM_GAIN:.0f} points from starts with headroom"),
            yes="Where SFT leaves correct answers in the sampling distribution, RL turns them "
                "into greedy ones.",
            no="Even from starts with headroom, RL costs accuracy on general."),
    Finding("4a", "4", "beta scan: stability",
            "greedy accuracy on general is the same for beta in {0.02, 0.05, 0.1}",
            "91.4-91.6% (spread 0.2 points), pass@8 98-100%", "06_beta_scan",
            tuple((f"beta/{b:g}/general/acc", 1.0) for b in STUDY_BETAS),
            "the spread (max - min) of greedy general accuracy over beta in {0.02, 0.05, 0.1}",
            Rule("at_most", STABLE_TOL), kind="spread",
            needs=tuple(("betas", b) for b in STUDY_BETAS) + (("buckets", "general"),),
            guard=(tuple(f"beta/{b:g}/general/acc" for b in STUDY_BETAS), STABLE_MIN_ACC,
                   "the arms' mean accuracy is below 50%: a model that gets little right is "
                   "trivially stable"),
            yes="Within this range the choice of beta does not move accuracy.",
            no="Accuracy depends on beta within the study's range."),
    Finding("4b", "4", "beta scan: does the KL term bind?",
            "at the largest beta, the policy ends closer to its start (exact KL) than at beta = 0",
            "not in the study (it says the KL term keeps the policy near the SFT checkpoint)",
            "06_beta_scan", _vs("beta/0/kl", "beta/{beta_max}/kl"),
            "KL(beta = 0) - KL(largest beta), exact, per answer token", unit="nats",
            needs=(("betas", 0.0),),
            yes="The KL term binds: a large beta holds the policy nearer its start.",
            no="The policy drifts further with the large beta than without the KL term."),
    Finding("4c", "4", "forgetting: early RL on buckets it never practises",
            "RL from the control model lowers its greedy accuracy on d1 and d2_* (buckets no RL "
            "prompt comes from)", "not in the study", "05_kl_rl",
            _vs("rl/control/sft/unpractised/acc", "rl/control/rl/unpractised/acc"),
            "before - after RL, greedy accuracy on the unpractised buckets (d1, d2_*) pooled",
            needs=(("curricula", "control"),),
            yes="RL forgets what it does not practise: the cost beta is meant to guard against.",
            no="RL improved even the buckets it never practised."),
    Finding("4d", "4", "forgetting: does the KL term guard against it?",
            "RL from the control model at the largest beta keeps more of d1 and d2_* (buckets no "
            "RL prompt comes from) than at beta = 0", "not in the study", "06_beta_scan",
            _vs("forget/{beta_max}/unpractised/acc", "forget/0/unpractised/acc"),
            "greedy accuracy on the unpractised buckets after RL, largest beta - beta = 0",
            needs=(("curricula", "control"), ("betas", 0.0)),
            yes="The KL term guards against forgetting: a large beta keeps what RL never practises.",
            no="A large beta forgets more of the unpractised buckets than no KL term at all."),
    Finding("5a", "5", "low_sum: curriculum vs early RL (2 x 2)",
            "the targeted curriculum alone beats the control curriculum followed by RL on "
            "held-out low_sum: (targeted SFT - control SFT) exceeds (control SFT+RL - control SFT)",
            "qualitative: 'curriculum design is far more important than early RL application'",
            "05_kl_rl", _vs("rl/targeted/sft/low_sum/acc", "rl/control/rl/low_sum/acc"),
            "targeted SFT - control SFT+RL greedy accuracy on held-out low_sum",
            needs=(("curricula", "targeted"), ("curricula", "control"), ("buckets", "low_sum")),
            yes="The curriculum buys more than early RL does.",
            no="Early RL repairs more than the curriculum does."),
    Finding("5b", "5", "mixed: curriculum vs early RL (2 x 2)",
            "the targeted curriculum alone beats the control curriculum followed by RL on "
            "held-out mixed", "qualitative (as 5a)", "05_kl_rl",
            _vs("rl/targeted/sft/mixed/acc", "rl/control/rl/mixed/acc"),
            "targeted SFT - control SFT+RL greedy accuracy on held-out mixed",
            needs=(("curricula", "targeted"), ("curricula", "control"), ("buckets", "mixed")),
            yes="The curriculum buys more than early RL does.",
            no="Early RL repairs more than the curriculum does."),
    Finding("6", "6", "answer formats: reversed vs plain on general",
            "under the same token budget, reversed answers beat plain ones on general",
            "not in the study (beyond it: plain / reversed / scratchpad)", "03_sft",
            _vs("format/reversed/general/acc", "format/plain/general/acc"),
            "reversed - plain greedy accuracy on general",
            needs=(("formats", "reversed"), ("formats", "plain"), ("buckets", "general")),
            yes="Writing the sum least-significant digit first makes carries learnable.",
            no="Plain answers do better at this budget."),
    Finding("6b", "6", "length: local positions, one digit longer than trained",
            f"with local positions (coupled places, attention kept to a digit's place and the one "
            f"below) the targeted SFT model adds two numbers one digit longer than any it trained "
            f"on (greedy >= {LENGTH_REACH:.0%}) on most seeds",
            "not in the study (its ood_long is 0% for every format, with rotary positions)",
            "08_lengths", (("length/local/{len_d1}/acc", 1.0),),
            "greedy accuracy with operands of max_digits + 1 digits",
            kind="share", reach=LENGTH_REACH, shares=0.5, needs=(("positions", "local"),),
            yes="A model that cannot tell how far a digit is from the units extends the procedure "
                "past the trained lengths.",
            no="Even with local positions the model does not extend past the trained lengths."),
    Finding("7a", "7", "12+3-style errors after targeted SFT",
            "the targeted SFT model still makes digit-substitution or operand-duplication errors "
            "on held-out mixed-digit problems (mixed, low_sum, mixed3, general)",
            "qualitative: 12+3 -> 18 (digit substitution), 12+3 -> 123 (operand duplication)",
            "07_failure_analysis", (("fail/sft-targeted/study_errors", 1.0),),
            "the share of held-out mixed, low_sum, mixed3 and general problems answered with a "
            "12+3-style error",
            needs=(("curricula", "targeted"),),
            yes="The study's error classes survive targeted SFT.",
            no="Targeted SFT removes the study's error classes."),
    Finding("7b", "7", "format failures: control vs targeted SFT",
            "the targeted SFT model makes fewer format failures (unparsable answers) than control",
            "qualitative: 'targeted SFT fixes the format corruption issue of the old curriculum'",
            "07_failure_analysis", _vs("fail/sft-control/format", "fail/sft-targeted/format"),
            "control - targeted share of unparsable greedy answers, all buckets",
            needs=(("curricula", "targeted"), ("curricula", "control")),
            yes="The targeted curriculum fixes format corruption.",
            no="The targeted model corrupts the format more often."),
    Finding("8", "8", "the 3-digit transition",
            f"the targeted SFT model learns 3-digit addition (greedy general >= "
            f"{TRANSITION:.0%}) on most seeds", "not in the study", "03_sft",
            (("sft/targeted/general/acc", 1.0),), "targeted greedy accuracy on general",
            kind="share", reach=TRANSITION, shares=0.5,
            needs=(("curricula", "targeted"), ("buckets", "general")),
            yes="The transition is reliable at this budget.",
            no="At this budget the transition fails on most seeds."),
    Finding("8b", "8", "RL vs more SFT at equal compute",
            "from the targeted checkpoint where the probe first reached 50% on general, RL "
            "beats continued SFT given the same FLOPs (rl.sft_tokens_of) on general",
            "not in the study (no published study at this scale reports it)", "05_kl_rl",
            _vs("rl_vs_sft/RL/general/acc", "rl_vs_sft/more_SFT/general/acc"),
            "RL - more SFT greedy accuracy on general, from the same mid-transition checkpoint",
            needs=(("curricula", "targeted"), ("buckets", "general")),
            undefined="the targeted run had no probe before its end to start from",
            yes="At equal compute, RL's sampled rewards teach more than more SFT does.",
            no="At equal compute, more SFT does better than RL."),
)
BINDS = next(f for f in FINDINGS if f.id == "4b")   # "the KL term binds", for 06 and 09 alike


def for_notebook(notebook: str) -> list[Finding]:
    return [f for f in FINDINGS if f.notebook == notebook]


def this_run(notebook: str, metrics: dict) -> list[dict]:
    """The findings one notebook's records decide, evaluated on this seed alone."""
    return [evaluate(f, {f"seed-{metrics.get('seed', 0)}": metrics}) for f in for_notebook(notebook)]


def story_markdown(results: list[dict]) -> str:
    """What a run shows, as Markdown: one paragraph per finding, its verdict and rule."""
    parts = []
    for r in results:
        v = r["verdict"] if r["measured"] else "not measured"
        parts.append(f"**{r['id']}. {r['title']}: {v}.** " + " ".join(r["sentences"])
                     + (f"\n*Rule: {r['rule']}.*" if r["measured"] else ""))
    return "\n\n".join(parts) if parts else "_No finding is decided by this notebook alone._"
