"""The findings as data, and the one function that evaluates them.

A :class:`Finding` names the records it reads (flat names a notebook writes, see
:mod:`reasonlib.study.records`), how they make one quantity per seed (a weighted sum, or "did
this seed get there"), the claim's rule and, for the study's own claims, the effect the study
published. :func:`evaluate` is the only code that computes a verdict: notebook 09 and the
report call it on every seed, each notebook calls it on its own seed ("this seed only").

**Two families.** The study's seven claims (``family="study"``) are *reproduced* or not; the
suite's own questions (``family="suite"``) are *supported* or not, never "reproduced". Each
family is one family for Holm's adjustment (:func:`adjust`), reported beside the raw verdict.

**Intervals** (:func:`reasonlib.core.stats.interval`, never outside the quantity's range, its
coverage measured in tests/test_stats.py):

* 2 or more seeds: Student's t interval over the seeds' values, widened where the studentized
  bootstrap asks for more; for "k of n seeds got there", the exact binomial interval.
* 1 seed: the same interval over the eval problems of the per-problem quantity (the models of
  a notebook are scored on the same problems, so differences are paired). Labelled "this seed
  only": it says how sure we are about this seed's models, not how the result moves when
  everything is retrained with another seed.

**Rules** (:meth:`Rule.decide`), each a one-sided test at 2.5% per side (a 95% interval):

* ``above`` t: the claim holds if the interval lies above t, fails if it lies below.
* ``at_most`` t: holds if the interval lies at or below t, fails if it lies above.
* ``equivalent`` m (a claim of no change, "stable", "the same"; two one-sided tests): holds if
  the interval lies inside (-m, +m), fails if it lies wholly outside.
* a **size** (a study claim with ``effect`` E > 0, rule ``above 0``): *consistent with the
  study's* means within a factor of two of E, i.e. the interval reaches into [E/2, 2E]. The
  interval above 0 and reaching into the band: reproduced; above 0 but below E/2: reproduced
  in direction, smaller; above 2E: larger. Not above 0 and below E/2: not reproduced (it rules
  out the study's size even where it holds 0); else inconclusive.
* a **share** ("on most seeds"): with n seeds, k of n reaching the level; holds if
  P(at least k | half) < 2.5% (the exact interval lies above 50%), fails if P(at most k |
  half) < 2.5%. The rule text names the k of n each needs (e.g. 9 of 10).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..study import lengths
from ..core import stats
from ..study.records import PER_PROBLEM, RecordError, vector

FAMILIES = ("study", "suite")
VERDICTS = {"study": ("reproduced", "smaller", "larger", "not reproduced", "inconclusive"),
            "suite": ("supported", "not supported", "inconclusive")}
VERDICT_TEXT = {"smaller": "reproduced in direction, smaller than the study's",
                "larger": "reproduced in direction, larger than the study's"}
HOLDS = {"study": "reproduced", "suite": "supported"}
FAILS = {"study": "not reproduced", "suite": "not supported"}
SIZE_BAND = (0.5, 2.0)   # "consistent with the study's": within a factor of two of its effect


def verdict_text(v: str) -> str:
    return VERDICT_TEXT.get(v, v)


@dataclass(frozen=True)
class Rule:
    """The claim ``quantity > threshold`` (``above``), ``quantity <= threshold`` (``at_most``)
    or ``|quantity| < threshold`` (``equivalent``: the threshold is the margin)."""
    kind: str = "above"
    threshold: float = 0.0

    def sides(self, lo: float, hi: float) -> tuple[bool, bool]:
        """(the interval lies on the claim's side, it lies wholly on the other side)."""
        t = self.threshold
        if self.kind == "above":
            return lo > t, hi < t
        if self.kind == "at_most":
            return hi <= t, lo > t
        if self.kind == "equivalent":
            return -t < lo and hi < t, lo > t or hi < -t
        raise ValueError(f"unknown rule kind {self.kind!r}; allowed: above, at_most, equivalent")

    def p(self, iv: stats.Interval, holds: bool) -> float:
        """The one-sided p of the test behind ``sides``: of the claim (holds) or of its failure."""
        t = self.threshold
        if self.kind == "above":
            return iv.p_above(t) if holds else iv.p_below(t)
        if self.kind == "at_most":   # "at most" holds when hi <= t: p of "mean > t"
            return iv.p_below(t) if holds else iv.p_above(t)
        if holds:   # two one-sided tests: both must reject
            return max(iv.p_above(-t), iv.p_below(t))
        return min(iv.p_above(t), iv.p_below(-t))

    def text(self, what: str, unit: str, points: bool = True) -> str:
        t = threshold_text(self.threshold, unit, points)
        if self.kind == "above":
            return f"the 95% interval of {what} lies above {t}; fails if it lies below {t}"
        if self.kind == "at_most":
            return f"the 95% interval of {what} lies at or below {t}; fails if it lies above {t}"
        return (f"the 95% interval of {what} lies inside ±{t} (two one-sided tests); fails if "
                f"it lies wholly outside ±{t}")


@dataclass(frozen=True)
class Finding:
    """One claim, as data. ``terms`` are (record name, weight); ``kind`` says how a seed's
    values make its quantity: ``linear`` (the weighted sum) or ``share`` (1 if the first record
    reaches ``reach``; across seeds, the share of seeds that did). Record names may hold
    ``{beta_max}``, filled from the notebook's ``betas`` parameter."""
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
    family: str = "suite"           # "study": one of the study's claims; "suite": our question
    effect: float | None = None     # the study's published effect, in the quantity's units
    start: str = ""                 # the study's start, where its effect is a gain from one
    needs: tuple = ()               # (parameter, value) the notebook must have run with
    goal: tuple | None = None       # (record name, minimum, words)
    study_value: tuple | None = None  # (record name, published, words): "beats the study" when
    #                                   the 95% interval of that record's level lies above it
    guard: tuple | None = None      # (record names, minimum mean, words): else inconclusive
    reach: float | None = None      # kind "share": the level a seed must reach
    shares: float = 0.5             # kind "share": the claim is share of seeds > this
    undefined: str = ""             # why a seed's records can be None (e.g. nothing to pool)
    yes: str = ""                   # what the claim holding means, in a sentence
    no: str = ""                    # what its failing means

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"finding {self.id}: family {self.family!r}; allowed: {FAMILIES}")
        if self.effect is not None and (self.family != "study" or self.rule != Rule("above", 0.0)
                                        or self.effect <= 0):
            raise ValueError(f"finding {self.id}: a study effect needs a study claim with the "
                             f"rule 'above 0' and an effect > 0")

    @property
    def verdicts(self) -> tuple:
        """The verdicts this finding's rule can give (a size band above the range drops "larger")."""
        if self.effect is None:
            return (HOLDS[self.family], FAILS[self.family], "inconclusive")
        band = size_band(self)
        out = VERDICTS["study"]
        return out if band[1] < quantity_range(self)[1] else tuple(v for v in out if v != "larger")


def size_band(f: Finding) -> tuple[float, float]:
    """The effects "consistent with the study's": within a factor of two of it."""
    return (SIZE_BAND[0] * f.effect, SIZE_BAND[1] * f.effect)


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
    """A threshold in words: '0', '2.0 points' (a difference), '90.0%' (a level)."""
    return "0" if t == 0 else fmt_value(t, unit) + unit_word(unit, points)


def is_points(f: "Finding") -> bool:
    """Whether the quantity is a difference of percentages (shown in points)."""
    return f.kind == "linear" and any(w < 0 for _, w in f.terms)


def fmt_interval(lo, hi, unit: str, signed: bool = False) -> str:
    if lo is None:
        return "n/a"
    return f"[{fmt_value(lo, unit, signed)}, {fmt_value(hi, unit, signed)}]"


def effect_text(f: Finding) -> str:
    """The study's effect in words, e.g. '+10.0 points from 80.7%'."""
    if f.effect is None:
        return ""
    return (fmt_value(f.effect, f.unit, True) + unit_word(f.unit, True)
            + (f" from {f.start}" if f.start else ""))


# ---- evaluation ---------------------------------------------------------------------------------
def _names(f: Finding, params: dict) -> list[str]:
    betas = params.get("betas") or []
    fill = {"beta_max": f"{max(betas):g}" if betas else "?",
            "len_d1": lengths.name(lengths.longest_trained(params.get("max_digits", 3)) + 1)}
    return [name.format(**fill) for name, _ in f.terms]


def _weights(f: Finding) -> np.ndarray:
    return np.array([w for _, w in f.terms], dtype=np.float64)


def quantity_range(f: Finding) -> tuple[float, float]:
    """The values the quantity can take: a weighted sum of fractions, a share; KL differences
    are unbounded."""
    if f.kind == "share":
        return (0.0, 1.0)
    w = _weights(f)
    if f.unit != "%":
        return (float(-np.inf) if (w < 0).any() else 0.0, float(np.inf))
    return (float(w[w < 0].sum()), float(w[w > 0].sum()))


def _per_seed(f: Finding, row: list[float]) -> float:
    v = np.asarray(row, dtype=np.float64)
    if f.kind == "share":
        return float(v[0] >= f.reach)
    return float(v @ _weights(f))


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


def share_counts(n: int, shares: float = 0.5) -> tuple[int | None, int | None]:
    """(the fewest of n seeds that make "share > shares" hold, the most that make it fail),
    None where no count can: the exact one-sided binomial test at 2.5%."""
    def upper(k):   # P(X >= k | n, shares)
        return 1 - stats._binom_cdf(k - 1, n, shares) if k > 0 else 1.0
    holds = next((k for k in range(n + 1) if upper(k) < stats.ALPHA), None)
    fails = next((k for k in range(n, -1, -1) if stats._binom_cdf(k, n, shares) < stats.ALPHA), None)
    return holds, fails


def evaluate(f: Finding, seeds: dict[str, dict]) -> dict:
    """The finding over ``{seed: metrics file of f.notebook}`` (None where a seed lacks it):
    per-seed quantity, interval, verdict with its one-sided p, rule, goal, whether it beats the
    study, and a few generated sentences. JSON-able."""
    have = {s: nb for s, nb in seeds.items() if nb is not None}
    out = {"id": f.id, "number": f.number, "title": f.title, "claim": f.claim, "study": f.study,
           "notebook": f.notebook, "what": f.what, "unit": f.unit, "kind": f.kind,
           "family": f.family, "effect": f.effect, "effect_text": effect_text(f),
           "rule": "", "range": list(quantity_range(f)),
           "missing_seeds": sorted(s for s in seeds if seeds[s] is None),
           "per_seed": {}, "parts": {}, "n": 0, "point": None, "lo": None, "hi": None,
           "interval": "", "verdict": "inconclusive", "p": None, "holm": None, "p_holm": None,
           "measured": True, "why": "", "goal": None, "goal_met": None, "beats": None,
           "study_level": None}
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
    out["rule"] = rule_text(f, max(n, 1))
    if n == 0:
        out["why"] = "every seed's records are undefined"
    elif n == 1:
        _decide(f, _one_seed(f, next(iter(have[s] for s in rows)), out), out)
    elif f.kind == "share":
        k = int(sum(out["per_seed"].values()))
        lo, hi = stats.clopper_pearson(k, n)
        holds, fails = share_counts(n, f.shares)
        ok, bad = holds is not None and k >= holds, fails is not None and k <= fails
        out.update(point=k / n, lo=lo, hi=hi, k=k,
                   interval=f"exact binomial 95% interval over {n} seeds",
                   verdict=HOLDS[f.family] if ok else FAILS[f.family] if bad else "inconclusive",
                   p=(1 - stats._binom_cdf(k - 1, n, f.shares)) if not bad else
                   stats._binom_cdf(k, n, f.shares))
    else:
        iv = stats.interval(list(out["per_seed"].values()), quantity_range(f))
        out["interval"] = (f"95% interval over {n} seeds (Student's t, widened where the "
                           f"studentized bootstrap asks)")
        _decide(f, iv, out)
    if out["lo"] is not None:
        _guard(f, rows, have, out)
    _goal_and_study(f, rows, have, out)
    out["sentences"] = sentences(f, out)
    return out


def _decide(f: Finding, iv: stats.Interval, out: dict) -> None:
    """The verdict of a linear quantity's (or one seed's share's) interval, with its p."""
    rule = Rule("above", f.reach) if f.kind == "share" else f.rule
    holds, fails = rule.sides(iv.lo, iv.hi)
    v = HOLDS[f.family] if holds else FAILS[f.family] if fails else "inconclusive"
    p = rule.p(iv, holds=not fails)
    if f.effect is not None:
        lo_band, hi_band = size_band(f)
        if holds:
            v = "smaller" if iv.hi < lo_band else "larger" if iv.lo > hi_band else "reproduced"
        elif iv.hi < lo_band:
            v, p = "not reproduced", iv.p_below(lo_band)
    out.update(point=iv.mean, lo=iv.lo, hi=iv.hi, verdict=v, p=p)


def rule_text(f: Finding, n: int) -> str:
    """The rule in words, for n seeds (a share rule names its k of n)."""
    yes, no = HOLDS[f.family], FAILS[f.family]
    if f.kind == "share":
        holds, fails = share_counts(n, f.shares) if n > 1 else (None, None)
        level = f"{fmt_value(f.reach, f.unit)}{unit_word(f.unit, False)}"
        if n == 1:
            return f"one seed: {yes} if " + Rule("above", f.reach).text(f.what, f.unit, False)
        need = (f"at least {holds} of {n} seeds" if holds is not None else
                f"no count of {n} seeds (at least 6 are needed)")
        fail = f"at most {fails} of {n}" if fails is not None else "no count"
        return (f"{yes} if {need} reach {f.what} >= {level} (exact binomial test of a share "
                f"above {f.shares:.0%}, one-sided 2.5%); {no} if {fail} do; else inconclusive")
    text = f"{yes} if " + f.rule.text(f.what, f.unit, points=is_points(f)).replace(
        "; fails", f"; {no}") + "; else inconclusive"
    if f.effect is not None:
        lo, hi = size_band(f)
        text = (f"{yes} if the 95% interval of {f.what} lies above 0 and reaches into "
                f"[{fmt_value(lo, f.unit, True)}, {fmt_value(hi, f.unit, True)}]{unit_word(f.unit, True)} "
                f"(within a factor of two of the study's {effect_text(f)}); "
                f"{verdict_text('smaller')} if it lies above 0 but below that band; "
                f"{verdict_text('larger')} if above it; {no} if it lies below the band "
                f"without lying above 0; else inconclusive")
    if f.guard:
        text += f"; inconclusive too when {f.guard[2]}"
    return text


def _one_seed(f: Finding, nb: dict, out: dict) -> stats.Interval:
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
    per_problem = m[:, 0] if f.kind == "share" else m @ _weights(f)
    bounds = (0.0, 1.0) if f.kind == "share" else quantity_range(f)
    iv = stats.interval(per_problem, bounds)
    # the point is the quantity of the seed's own records (the vectors are rounded floats)
    vals = np.array([rec[n] for n in names], dtype=np.float64)
    point = float(vals[0] if f.kind == "share" else vals @ _weights(f))
    out.update(n_problems=len(m),
               interval=f"this seed only: 95% interval over its {len(m)} eval problems")
    return stats.Interval(point, min(iv.lo, point), max(iv.hi, point), iv.se, iv.n, iv.t_boot)


def _guard(f: Finding, rows: dict, have: dict, out: dict) -> None:
    if not f.guard or out["verdict"] == "inconclusive":
        return
    names, minimum, words = f.guard
    level = np.mean([np.mean([have[s]["records"][n] for n in names]) for s in rows])
    if level < minimum:
        out.update(verdict="inconclusive", p=1.0, why=f"{words} (mean {fmt_value(level, '%')}%)")


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
            point, lo, hi = stats.mean_interval(v, (0.0, 1.0))
        else:
            nb = next(iter(have[s] for s in rows))
            vec = vector(nb["records"][name + PER_PROBLEM]) if name + PER_PROBLEM in nb["records"] else None
            point = v[0]
            lo, hi = (None, None) if vec is None else stats.mean_interval(vec[~np.isnan(vec)], (0.0, 1.0))[1:]
        if lo is not None:
            out["beats"] = bool(lo > published)
            out["study_level"] = {"what": words, "published": published, "point": float(point),
                                  "lo": float(min(lo, point)), "hi": float(max(hi, point))}



def adjust(results: list[dict]) -> list[dict]:
    """Holm's adjustment within each family, in place: ``p_holm`` and the ``holm`` verdict (the
    raw verdict where its adjusted p stays below 2.5%, else inconclusive)."""
    for fam in FAMILIES:
        rs = [r for r in results if r["family"] == fam and r["measured"] and r["p"] is not None]
        for r, p in zip(rs, stats.holm([r["p"] for r in rs])):
            r["p_holm"] = p
            r["holm"] = r["verdict"] if p < stats.ALPHA else "inconclusive"
    return results


def scoreboard(results: list[dict], family: str, key: str = "holm") -> str:
    """'3 reproduced, 1 smaller than the study's, 2 inconclusive' for one family."""
    vs = [(r[key] or r["verdict"]) if r["measured"] else "not measured"
          for r in results if r["family"] == family]
    order = VERDICTS[family] + ("not measured",)
    return ", ".join(f"{vs.count(v)} {verdict_text(v)}" for v in order if vs.count(v))


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


def _on_claim_side(f: Finding, v: float) -> bool:
    t = f.rule.threshold
    return {"above": v > t, "at_most": v <= t, "equivalent": abs(v) < t}[f.rule.kind]


def sentences(f: Finding, r: dict) -> list[str]:
    """Two or three sentences on what a result means, generated from its numbers."""
    if not r["measured"]:
        return [f"Not measured ({r['why']})."]
    if r["n"] == 0:
        return [f"No seed measured it ({f.undefined or 'every record it reads is undefined'})."]
    signed = is_points(f) or (f.kind == "linear" and r["range"][0] < 0)
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
        point = fmt_value(r["point"], u, signed) + unit_word(u, is_points(f))
        ivl = fmt_interval(r["lo"], r["hi"], u, signed)
        if r["n"] == 1:
            out.append(f"On this seed, {f.what} is {point} {ivl} ({r['interval']}).")
        else:
            vals = list(r["per_seed"].values())
            side = sum(_on_claim_side(f, v) for v in vals)
            out.append(f"Over {r['n']} seeds, {f.what} is {point} on average {ivl} "
                       f"({r['interval']}); per seed {fmt_value(min(vals), u, signed)} to "
                       f"{fmt_value(max(vals), u, signed)}, {side} of {r['n']} on the claim's side.")
    study = f"The study: {f.study}."
    if f.effect is not None:
        lo, hi = size_band(f)
        study += (f" Its effect, {effect_text(f)}; consistent with it: "
                  f"{fmt_value(lo, u, True)} to {fmt_value(hi, u, True)}{unit_word(u, True)}.")
    if r.get("beats") is not None:
        study += " " + level_text(r) + "."
    if r.get("goal"):
        study += f" Goal ({r['goal']}): {'met' if r['goal_met'] else 'not met'}."
    out.append(study)
    v = r["verdict"]
    one_share = f.kind == "share" and r["n"] == 1   # one seed says whether it got there, not how often
    if v in ("reproduced", "supported"):
        out.append("This seed got there." if one_share else f.yes or "The claim holds here.")
    elif v in ("smaller", "larger"):
        out.append(f"The direction holds ({f.yes or 'the claim holds'}), but the size is "
                   f"{v} than the study's: the interval lies {'below' if v == 'smaller' else 'above'} "
                   f"the band consistent with it.")
    elif v in ("not reproduced", "not supported"):
        if one_share:
            out.append("This seed did not get there.")
        elif f.effect is not None and r["lo"] <= 0:
            out.append("The interval rules out the study's size"
                       + (": it lies below 0. " + f.no if r["hi"] < 0 else
                          ", though not a gain of 0: more seeds would not bring it back."))
        else:
            out.append(f.no or "The claim does not hold here: the interval lies on the other side.")
    else:
        thr = Rule("above", f.reach).threshold if f.kind == "share" else f.rule.threshold
        unit_pts = is_points(f) and f.kind != "share"
        where = (f"crosses ±{threshold_text(thr, u, unit_pts)}" if f.rule.kind == "equivalent"
                 and f.kind != "share" else f"contains {threshold_text(thr, u, unit_pts)}")
        out.append(r["why"].capitalize() + "." if r["why"] else
                   f"The interval {where}: these "
                   f"{'problems' if r['n'] == 1 else 'seeds'} cannot tell"
                   f"{'; more seeds would' if r['n'] > 1 else ''}.")
    return out


# ---- the catalogue ------------------------------------------------------------------------------
# The study's claims (summary.PUBLISHED_SOURCE) and ours beyond it. The study
# does not say whether its accuracies are greedy or sampled; we compare greedy exact match.
# Every bucket is measured on its held-out problems (tasks.train_exclusions).
ARMS = ("control", "targeted")
STUDY_BETAS = (0.02, 0.05, 0.1)
STABLE_MARGIN = 0.01     # "stable": beta 0.1 and beta 0.02 within 1 point (two one-sided tests)
STABLE_MIN_ACC = 0.5     # below this mean accuracy, stability says nothing
TRANSITION = 0.9         # the 3-digit transition happened: targeted general >= 90% greedy
LENGTH_REACH = 0.9       # a length "is added": greedy >= 90%
HEADROOM = (0.2, 0.85)   # starts "with headroom": greedy general in [20%, 85%] (05 pools them)
HEADROOM_GAIN = 0.10     # the RL issue's goal for them: +10 points of greedy general
STUDY_ERRORS_MIN = 0.005  # "still makes 12+3-style errors": on more than 1 in 200 problems
FORMAT_MAX = 0.01        # "fixes the format corruption": at most 1% of answers unparsable


def _vs(a: str, b: str) -> tuple:
    return ((a, 1.0), (b, -1.0))


FINDINGS = (
    Finding("1a", "1", "low_sum: targeted vs control SFT",
            "the targeted curriculum beats the control curriculum on held-out low_sum problems",
            "64.8% -> 85.4% (control -> targeted)", "03_sft",
            _vs("sft/targeted/low_sum/acc", "sft/control/low_sum/acc"),
            "targeted - control greedy accuracy on held-out low_sum",
            family="study", effect=0.854 - 0.648,
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
            "targeted - control pass@8 on general", family="study", effect=0.99 - 0.81,
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
            family="study", effect=0.907 - 0.807, start="80.7%",
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
            "greedy accuracy on general is the same for beta in {0.02, 0.05, 0.1}: the ends of "
            f"the range, 0.1 and 0.02, within ±{100 * STABLE_MARGIN:.0f} point",
            "91.4-91.6% (spread 0.2 points), pass@8 98-100%", "06_beta_scan",
            _vs(f"beta/{max(STUDY_BETAS):g}/general/acc", f"beta/{min(STUDY_BETAS):g}/general/acc"),
            "beta 0.1 - beta 0.02 greedy accuracy on general",
            Rule("equivalent", STABLE_MARGIN), family="study",
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
            "targeted SFT - control SFT+RL greedy accuracy on held-out low_sum", family="study",
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
            f"on more than {STUDY_ERRORS_MIN:.1%} of held-out problems whose operands differ in "
            "length",
            "qualitative: 12+3 -> 18 (digit substitution), 12+3 -> 123 (operand duplication)",
            "07_failure_analysis", (("fail/sft-targeted/study_errors", 1.0),),
            "the share of distinct held-out problems with operands of different lengths (from "
            "mixed, mixed3 and general; low_sum lies inside mixed) answered with a 12+3-style error",
            Rule("above", STUDY_ERRORS_MIN), family="study",
            needs=(("curricula", "targeted"),),
            yes="The study's error classes survive targeted SFT.",
            no="Targeted SFT removes the study's error classes."),
    Finding("7b", "7", "format failures after targeted SFT",
            f"the targeted SFT model leaves format failures (unparsable answers) on at most "
            f"{FORMAT_MAX:.0%} of problems",
            "qualitative: 'targeted SFT fixes the format corruption issue of the old curriculum'",
            "07_failure_analysis", (("fail/sft-targeted/format", 1.0),),
            "the targeted model's share of unparsable greedy answers, all buckets",
            Rule("at_most", FORMAT_MAX), family="study",
            needs=(("curricula", "targeted"),),
            yes="After targeted SFT the format is not corrupted.",
            no="The targeted model still corrupts the format."),
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
        v = verdict_text(r["verdict"]) if r["measured"] else "not measured"
        parts.append(f"**{r['id']}. {r['title']}: {v}.** " + " ".join(r["sentences"])
                     + (f"\n*Rule: {r['rule']}.*" if r["measured"] else ""))
    return "\n\n".join(parts) if parts else "_No finding is decided by this notebook alone._"


# ---- power by construction --------------------------------------------------------------------------
def synthetic(f: Finding, values: list[float], n_problems: int = 200, spread: float = 0.0,
              base: float = 0.6) -> dict[str, dict]:
    """Metrics files for ``len(values)`` seeds whose quantity is each of ``values`` (a share
    finding: the level of its record), with per-problem vectors that scatter by ``spread``
    around it (mean kept): what a notebook writes, made to order. Records sit at ``base``,
    moved by the quantity along the sign of their weights. ValueError where a record would
    leave its range."""
    params = {"betas": [0.0, *STUDY_BETAS, 0.5], "max_digits": 3}
    for key, value in f.needs:
        params.setdefault(key, [])
        if value not in params[key]:
            params[key].append(value)
    names = _names(f, params)
    w = _weights(f)
    if f.kind == "share":
        w = np.array([1.0] + [0.0] * (len(w) - 1))
    z = np.resize([1.0, -1.0], n_problems)   # mean 0, so every vector keeps its record's value
    lo_ok = 0.0
    hi_ok = np.inf if f.unit != "%" else 1.0
    out = {}
    for i, q in enumerate(values):
        move = (q - base * w.sum()) / np.abs(w).sum()
        vals = base + np.sign(w) * move if f.kind != "share" else np.full(len(w), base) \
            + np.r_[q - base, np.zeros(len(w) - 1)]
        vecs = [v + np.sign(wi) * spread * z for v, wi in zip(vals, w)]
        if any(x.min() < lo_ok - 1e-12 or x.max() > hi_ok + 1e-12 for x in vecs):
            raise ValueError(f"finding {f.id}: quantity {q} with spread {spread} leaves the range")
        rec = {}
        for name, v, vec in zip(names, vals, vecs):
            rec[name] = float(v)
            rec[name + PER_PROBLEM] = [float(x) for x in vec]
        for name in (f.guard[0] if f.guard else ()):
            rec.setdefault(name, base)
        out[f"seed-{i}"] = {"notebook": f.notebook, "seed": i, "params": params, "records": rec}
    return out


@functools.lru_cache(maxsize=None)
def reachable(f: Finding, n: int, n_problems: int = 200) -> frozenset[str]:
    """The verdicts ``f``'s rule gives on made-to-order records of ``n`` seeds (one seed: of
    ``n_problems`` problems): a grid over the quantity's range and the rule's own points,
    each with no, some and much scatter. A verdict of :attr:`Finding.verdicts` missing here is
    one the rule cannot give at this n."""
    lo, hi = quantity_range(f)
    lo, hi = max(lo, -1.0), min(hi, 1.0)
    if f.kind == "share" and n > 1:
        return frozenset(evaluate(f, synthetic(f, [f.reach] * k + [f.reach / 2] * (n - k)))["verdict"]
                         for k in range(n + 1))
    points = list(np.linspace(lo, hi, 21))
    marks = [f.rule.threshold, -f.rule.threshold]
    if f.kind == "share":
        marks = [f.reach]
    if f.effect is not None:
        marks += list(size_band(f))
    points += [m + d for m in marks for d in (-0.02, -0.005, 0.0, 0.005, 0.02)]
    points = sorted({min(max(p, lo), hi) for p in points})
    spreads = (0.0, 0.005, 0.05, 0.3) if n == 1 else (0.0, 0.01, 0.1, 0.5)
    got = set()
    for q in points:
        for sp in spreads:
            vals = [q] if n == 1 else list(q + sp * np.linspace(-1, 1, n))
            try:
                files = synthetic(f, vals, n_problems, spread=sp if n == 1 else 0.0)
            except ValueError:
                continue
            got.add(evaluate(f, files)["verdict"])
    return frozenset(got)
