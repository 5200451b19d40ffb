"""Cross-seed summary: every finding evaluated over the seeds of one profile folder, the
headline measures with bounded intervals and per-seed values, the failure taxonomy and the
setup the story needs (notebook 09, the HTML report's index, the results blocks of README.md and docs/results.md).

Inputs are the records notebooks 02-08 write under ``<run_root>/seed-*/NN_name/metrics.json``
(:mod:`reasonlib.study.records`); nothing is scraped from cell outputs. A notebook whose metrics
file is missing is reported in ``missing`` and leaves that seed out of what needs it; a
record a finding needs that a present notebook did not write is an error
(:class:`reasonlib.study.records.RecordError`), so a renamed key cannot turn into "missing".

Statistics and verdict rules live in :mod:`reasonlib.report.findings` (one evaluator) and
:mod:`reasonlib.core.stats` (bootstrap and exact binomial intervals, never outside the range of
their quantity).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import findings as F
from ..study import records as R
from ..train import artifacts
from ..core import schemes as scheme_info, stats, tasks
from ..core.failures import CLASSES
from .tables import table

# the study's published text, as a URL (a path outside the repository would not resolve)
PUBLISHED_SOURCE = ("https://www.zingnex.cn/forum/thread/"
                    "llm-github-liuhprogramming-small-lm-reasoning-posttraining")
NOTEBOOKS = ("02_data_curricula", "03_sft", "04_pass_at_k", "05_kl_rl", "06_beta_scan",
             "07_failure_analysis", "08_lengths")
CHECKPOINTS = ("sft-control", "rl-control", "sft-targeted", "rl-targeted")
CHECKPOINT_NAMES = {"sft-control": "SFT control", "rl-control": "SFT+RL control",
                    "sft-targeted": "SFT targeted", "rl-targeted": "SFT+RL targeted"}
TAXONOMY_BUCKETS = ("mixed", "low_sum", "mixed3", "general")   # held-out, where 12+3 errors live
FAILURE_CLASSES = CLASSES

# The measures of the headline table: (record, label, notebook, published number or range,
# the model it is measured on: the start of every RL row is named, the study's included)
SFT = "SFT from scratch"
FINISHED = "RL from the finished SFT model"
MOVING = "RL from the mid-transition targeted checkpoint (first probe >= 50%)"
HEADLINE = (
    ("sft/control/low_sum/acc", "SFT control: low_sum (held-out)", "03_sft", 0.648, SFT),
    ("sft/targeted/low_sum/acc", "SFT targeted: low_sum (held-out)", "03_sft", 0.854, SFT),
    ("sft/control/mixed/acc", "SFT control: mixed (held-out)", "03_sft", None, SFT),
    ("sft/targeted/mixed/acc", "SFT targeted: mixed (held-out)", "03_sft", None, SFT),
    ("sft/control/mixed3/acc", "SFT control: mixed3", "03_sft", None, SFT),
    ("sft/targeted/mixed3/acc", "SFT targeted: mixed3", "03_sft", None, SFT),
    ("sft/control/general/acc", "SFT control: general", "03_sft", None, SFT),
    ("sft/targeted/general/acc", "SFT targeted: general", "03_sft", 0.807, SFT),
    ("format/plain/general/acc", "SFT targeted, plain: general", "03_sft", None, SFT),
    ("format/scratchpad/general/acc", "SFT targeted, scratchpad: general", "03_sft", None, SFT),
    ("format/reversed/ood_long/acc", "SFT targeted, reversed: ood_long", "03_sft", None, SFT),
    ("passk/control/general/pass@8", "SFT control: pass@8, general", "04_pass_at_k", 0.81, SFT),
    ("passk/targeted/general/pass@8", "SFT targeted: pass@8, general", "04_pass_at_k", 0.99, SFT),
    ("rl/targeted/rl/general/acc", "SFT+RL targeted: general", "05_kl_rl", 0.907,
     FINISHED + " (the study's: 80.7%)"),
    ("rl/targeted/rl/general/sampled_parse", "SFT+RL targeted: parse rate of samples, general",
     "05_kl_rl", 1.0, FINISHED),
    ("rl/control/sft/unpractised/acc", "SFT control: d1 + d2_* (RL never practises them)",
     "05_kl_rl", None, SFT),
    ("rl/control/rl/unpractised/acc", "SFT+RL control: d1 + d2_*", "05_kl_rl", None, FINISHED),
    ("rl/control/rl/low_sum/acc", "SFT+RL control: low_sum (held-out)", "05_kl_rl", None, FINISHED),
    ("beta/start/general/acc", "the beta scan's start: general", "06_beta_scan", None,
     "the mid-transition targeted checkpoint (first probe >= 50%)"),
    ("beta/0.02/general/acc", "beta = 0.02: general", "06_beta_scan", (0.914, 0.916),
     MOVING + "; the study's from a finished model"),
    ("beta/0.05/general/acc", "beta = 0.05: general", "06_beta_scan", (0.914, 0.916),
     MOVING + "; the study's from a finished model"),
    ("beta/0.1/general/acc", "beta = 0.1: general", "06_beta_scan", (0.914, 0.916),
     MOVING + "; the study's from a finished model"),
    ("beta/0/kl", "beta = 0: exact KL to the start", "06_beta_scan", None, MOVING),
    ("beta/0.5/kl", "beta = 0.5: exact KL to the start", "06_beta_scan", None, MOVING),
)


class SummaryError(ValueError):
    """A run root that cannot be summarised (missing, or no seed folders)."""


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
    """{notebook: metrics} for one seed folder, and the notebooks whose file is missing."""
    got, missing = {}, []
    for nb in NOTEBOOKS:
        f = Path(seed_dir) / nb / "metrics.json"
        if not f.is_file():
            missing.append(nb)
            continue
        got[nb] = R.read(f)
    return got, missing


# ---- measures -----------------------------------------------------------------------------------
def measure(name: str, notebook: str, files: dict[str, dict], unit: str = "%") -> dict:
    """One record across seeds: per-seed values, mean and bounded interval (bootstrap over
    seeds; with one seed, over that seed's problems when the record has its vector)."""
    per_seed = {}
    bounds = (0.0, 1.0) if unit == "%" else (0.0, np.inf)   # accuracies; a KL is >= 0
    for s, nbs in files.items():
        nb = nbs.get(notebook)
        if nb is not None and nb["records"].get(name) is not None:
            per_seed[s] = nb["records"][name]
    out = {"name": name, "unit": unit, "per_seed": per_seed, "n": len(per_seed),
           "mean": None, "lo": None, "hi": None, "interval": ""}
    if len(per_seed) >= 2:
        out["mean"], out["lo"], out["hi"] = stats.mean_interval(list(per_seed.values()), bounds)
        out["interval"] = f"bootstrap over {len(per_seed)} seeds"
    elif per_seed:
        (s, v), = per_seed.items()
        out["mean"] = v
        vec = files[s][notebook]["records"].get(name + R.PER_PROBLEM)
        if vec is not None:
            x = R.vector(vec)
            _, lo, hi = stats.mean_interval(x[~np.isnan(x)], bounds)
            out.update(lo=min(lo, v), hi=max(hi, v), interval="this seed only: bootstrap over problems")
    return out


def taxonomy(files: dict[str, dict]) -> dict:
    """Wrong greedy answers per checkpoint and class on the held-out buckets of TAXONOMY_BUCKETS
    (07's counts summed over them), mean over seeds; and every bucket's wrong answers."""
    out = {}
    for ck in CHECKPOINTS:
        row = {}
        for cls in ("wrong",) + FAILURE_CLASSES:
            vals = []
            for nbs in files.values():
                rec = (nbs.get("07_failure_analysis") or {}).get("records", {})
                parts = [rec.get(f"fail/{ck}/{b}/{cls}") for b in TAXONOMY_BUCKETS]
                parts = [p for p in parts if p is not None]
                if parts:
                    vals.append(float(sum(parts)))
            row[cls] = float(np.mean(vals)) if vals else None
        out[ck] = row
    return out


def headroom(files: dict[str, dict]) -> list[dict]:
    """The headroom curve's points over seeds: per seed and RL start of 05 (its keys, e.g.
    ``targeted@1750``, ``plain@end``), the start's greedy accuracy, pass@1 and pass@k (the
    largest k 05 recorded, ``k``) on general and RL's gains in greedy and pass@1 (fractions)."""
    out = []
    for s, nbs in files.items():
        rec = (nbs.get("05_kl_rl") or {}).get("records", {})
        for name in sorted(rec):
            if not (name.startswith("headroom/") and name.endswith("/start/greedy")):
                continue
            k = name[len("headroom/"):-len("/start/greedy")]
            top = [int(n.rsplit("@", 1)[1]) for n in rec
                   if n.startswith(f"headroom/{k}/start/pass@") and not n.endswith("@1")]
            a = {m: rec.get(f"headroom/{k}/start/{m}") for m in ("greedy", "pass@1")}
            b = {m: rec.get(f"headroom/{k}/rl/{m}") for m in ("greedy", "pass@1")}
            if not top or None in (*a.values(), *b.values()):
                continue
            pk = rec[f"headroom/{k}/start/pass@{max(top)}"]
            out.append({"seed": s, "start": k, "type": start_type(k), **a, "k": max(top),
                        "pass@k": pk, "gap": pk - a["greedy"],
                        "gain_greedy": b["greedy"] - a["greedy"], "gain_pass@1": b["pass@1"] - a["pass@1"]})
    return out


START_TYPES = ("snapshot", "finished arm", "format arm")


def start_type(key: str) -> str:
    """What an RL start of 05 is, from its key: ``targeted@2500`` a snapshot along the
    targeted schedule, ``control@end`` a finished curriculum arm, ``plain@end`` a finished
    answer-format arm (any name in ``tasks.FORMATS``)."""
    name, _, step = key.rpartition("@")
    return ("snapshot" if step != "end" else "format arm" if name in tasks.FORMATS
            else "finished arm")


# What might predict RL's gain from a start: its greedy accuracy, its pass@k, and the gap
# between them (correct answers the start samples but does not choose greedily)
HEADROOM_PREDICTORS = ("greedy", "pass@k", "gap")
HEADROOM_DEGREE = 2   # a quadratic: a gain that rises and falls with the start's level


def headroom_fits(points: list[dict]) -> dict[str, dict[str, dict]]:
    """RL's gain in greedy accuracy (points) fitted on each of :data:`HEADROOM_PREDICTORS`
    (``stats.polyfit``, degree :data:`HEADROOM_DEGREE`, its R² on the data and held out one
    seed at a time), over every start (``"all"``, where the start's type is a predictor too:
    :func:`type_fit`) and over the snapshots alone (``"snapshot"``). A scope with too few
    points or fewer than 3 seeds has no fits."""
    out = {}
    for scope in ("all", "snapshot"):
        pts = [p for p in points if scope == "all" or p.get("type") == scope]
        if len(pts) <= HEADROOM_DEGREE + 2 or len({p["seed"] for p in pts}) < 3:
            continue
        y = [100 * p["gain_greedy"] for p in pts]
        seeds = [p["seed"] for p in pts]
        fits = {}
        for x in HEADROOM_PREDICTORS:
            try:
                fits[x] = stats.polyfit([p[x] for p in pts], y, HEADROOM_DEGREE, seeds)
            except ValueError:   # no spread in this predictor
                continue
        if scope == "all":
            fits["type"] = type_fit(pts)
        out[scope] = fits
    return out


def type_fit(points: list[dict]) -> dict:
    """The start's type (:func:`start_type`) as the predictor: each start's gain predicted by
    its type's mean gain, R² on the data and held out one seed at a time (a seed's starts
    predicted from the other seeds' means; a type no other seed has predicts the overall
    mean). The yardstick for the numeric predictors: do they say more than the type?"""
    y = np.array([100 * p["gain_greedy"] for p in points])
    t = [p["type"] for p in points]
    s = [p["seed"] for p in points]

    def means(keep):
        ys = {u: [v for v, tt, k in zip(y, t, keep) if k and tt == u] for u in set(t)}
        rest = [v for v, k in zip(y, keep) if k]
        return {u: float(np.mean(v)) if v else float(np.mean(rest)) for u, v in ys.items()}

    m = means([True] * len(y))
    held = np.array([means([q != si for q in s])[ti] for ti, si in zip(t, s)])
    return {"means": m, "r2": stats.r_squared(y, [m[u] for u in t]),
            "r2_held_out": stats.r_squared(y, held), "n": len(y), "groups": len(set(s))}


RAZOR_STARTS = {"moving": "mid-transition", "control": "control, finished"}


def razor(files: dict[str, dict]) -> list[dict]:
    """06's RL runs over seeds, for forgetting against KL (RL's Razor): per seed, start
    (:data:`RAZOR_STARTS`) and beta, the exact KL to the start on RL's prompt buckets and
    the change in greedy accuracy on the unpractised buckets (points), from its
    ``razor/<start>/<beta>/{kl,forget}`` records."""
    out = []
    for s, nbs in files.items():
        rec = (nbs.get("06_beta_scan") or {}).get("records", {})
        for name in sorted(rec):
            parts = name.split("/")
            if len(parts) == 4 and parts[0] == "razor" and parts[3] == "kl":
                f = rec.get(f"razor/{parts[1]}/{parts[2]}/forget")
                if rec[name] is not None and f is not None:
                    out.append({"seed": s, "start": RAZOR_STARTS.get(parts[1], parts[1]),
                                "beta": float(parts[2]), "kl": float(rec[name]), "forget": 100 * f})
    return out


def razor_fit(points: list[dict]) -> dict:
    """The line through :func:`razor`'s points (change on the unpractised buckets, in points,
    against KL), with R² on the data and, from 3 seeds, held out one seed at a time; empty
    where there is no line to fit."""
    seeds = [p["seed"] for p in points]
    try:
        return stats.polyfit([p["kl"] for p in points], [p["forget"] for p in points], 1,
                             seeds if len(set(seeds)) >= 3 else None)
    except ValueError:
        return {}


def grids(files: dict[str, dict]) -> dict[str, dict[str, list[float]]]:
    """08's length-pair grids over seeds: {arm: {cell "ixj": [greedy acc per seed]}}, from its
    ``grid/<arm>/<cell>/acc`` records (reasonlib.study.grid)."""
    out: dict[str, dict[str, list[float]]] = {}
    for nbs in files.values():
        rec = (nbs.get("08_lengths") or {}).get("records", {})
        for name, v in rec.items():
            parts = name.split("/")
            if len(parts) == 4 and parts[0] == "grid" and parts[3] == "acc" and v is not None:
                out.setdefault(parts[1], {}).setdefault(parts[2], []).append(float(v))
    return out


def setup(files: dict[str, dict]) -> dict:
    """What the story states up front: model, budgets, buckets and what was held out (from
    the first seed's parameters and 02's split records)."""
    for nbs in files.values():
        p = (nbs.get("03_sft") or nbs.get("02_data_curricula") or {}).get("params", {})
        split = (nbs.get("02_data_curricula") or {}).get("records", {})
        rl = (nbs.get("05_kl_rl") or {}).get("params", {})
        beta = (nbs.get("06_beta_scan") or {}).get("params", {})
        if p:
            buckets = [{"bucket": b, **{k: split.get(f"split/{b}/{k}") for k in ("problems", "held_out", "eval")}}
                       for b in p.get("buckets", [])]   # a list: the bucket order survives JSON
            return {"model": {k: p.get(k) for k in ("n_layer", "n_head", "n_embd", "pos", "pos_offset")},
                    "fmt": p.get("fmt"), "max_digits": p.get("max_digits"),
                    "total_tokens": p.get("total_tokens"), "curricula": p.get("curricula"),
                    "formats": p.get("formats"), "buckets": buckets,
                    "n_eval": p.get("n_eval"),
                    "rl": {k: rl.get(k) for k in ("rl_steps", "rl_prompts", "rl_group", "beta",
                                                  "rl_buckets")},
                    "betas": beta.get("betas"),
                    "transitions": {s: (nbs.get("03_sft") or {}).get("records", {}).get(
                        "sft/targeted/general/acc") for s, nbs in files.items()}}
    return {}


def root_shown(run_root) -> str:
    """The run root as the summary records it: relative to the repository when inside it,
    otherwise its folder's name, so that no machine's path reaches a published file."""
    p = artifacts.shown(run_root)
    return p if not Path(p).is_absolute() else Path(p).name


def summarize(run_root) -> dict:
    """Everything notebook 09 shows and writes (JSON-able)."""
    seed_dirs = find_seeds(run_root)
    files, missing = {}, {}
    for p in seed_dirs:
        got, miss = load_seed(p)
        files[p.name] = got
        if miss:
            missing[p.name] = miss
    seeds = [p.name for p in seed_dirs]
    results = F.adjust([F.evaluate(f, {s: files[s].get(f.notebook) for s in seeds})
                        for f in F.FINDINGS])
    measures = []
    for name, label, nb, published, start in HEADLINE:
        m = measure(name, nb, files, "nats" if name.endswith("/kl") else "%")
        m.update(label=label, notebook=nb, published=list(published) if isinstance(published, tuple)
                 else published, start=start)
        measures.append(m)
    s = {"run_root": root_shown(run_root), "seeds": seeds, "n_seeds": len(seeds),
         "missing": missing, "published_source": PUBLISHED_SOURCE,
         "findings": results, "measures": measures, "taxonomy": taxonomy(files),
         "headroom": (hp := headroom(files)), "headroom_fits": headroom_fits(hp),
         "razor": (rz := razor(files)), "razor_fit": razor_fit(rz), "grids": grids(files),
         "setup": setup(files), "level": stats.LEVEL, "machines": machines(files)}
    s["limitations"] = limitations(s, files)
    s["story"] = story(s)
    return s


# ---- text tables ----------------------------------------------------------------------------------
def interval_word(n_seeds: int) -> str:
    return ("95% Student t over seeds, widened where the studentized bootstrap asks (exact "
            "binomial for k of n seeds)" if n_seeds > 1
            else "this seed only: 95% Student t over its eval problems, widened where the "
                 "studentized bootstrap asks")


def fmt_published(pub, unit: str) -> str:
    if pub is None:
        return ""
    if isinstance(pub, (list, tuple)):
        return f"{F.fmt_value(pub[0], unit)}-{F.fmt_value(pub[1], unit)}"
    return F.fmt_value(pub, unit)


MEASURE_HEADERS = ["measure", "model", "unit", "study", "mean", "95% interval", "n", "per seed"]


def measure_rows(s: dict) -> list[list[str]]:
    rows = []
    for m in s["measures"]:
        if not m["n"]:
            continue
        u = m["unit"]
        rows.append([m["label"], m.get("start", ""), "%" if u == "%" else u, fmt_published(m["published"], u),
                     F.fmt_value(m["mean"], u), F.fmt_interval(m["lo"], m["hi"], u), str(m["n"]),
                     ", ".join(F.fmt_value(v, u) for v in F.seed_order(m["per_seed"]))])
    return rows


def format_measures(s: dict) -> str:
    return table(measure_rows(s), MEASURE_HEADERS)


FINDING_HEADERS = ["#", "finding", "study", "ours", "verdict", "goal"]


def ours_text(r: dict) -> str:
    """Our number for a finding: the quantity, its interval and the per-seed values."""
    if not r["measured"]:
        return r["why"]
    if r["n"] == 0:
        return "no seed measured it"
    u, signed = r["unit"], r["kind"] == "linear" and r["range"][0] < 0
    if r["kind"] == "share" and r["n"] > 1:
        return (f"{r['k']} of {r['n']} seeds >= {F.TRANSITION:.0%} "
                f"[{r['lo']:.0%}, {r['hi']:.0%}]")
    per = ", ".join(F.fmt_value(v, u, signed and r["kind"] != "share") for v in
                    ([r["point"]] if r["n"] == 1 else F.seed_order(r["per_seed"])))
    head = f"{F.fmt_value(r['point'], u, signed)} {F.fmt_interval(r['lo'], r['hi'], u, signed)}"
    return head + ("" if r["n"] == 1 else f" (per seed: {per})")


def goal_text(r: dict) -> str:
    out = "" if not r.get("goal") else f"{r['goal']}: {'met' if r['goal_met'] else 'NOT met'}"
    if r.get("beats") is not None:
        lv = r["study_level"]
        out += (("; " if out else "") + ("beats" if r["beats"] else "does not beat")
                + f" the study's {F.fmt_value(lv['published'], '%')}% (ours {F.level_value(lv)})")
    return out


def finding_rows(s: dict) -> list[list[str]]:
    return [[r["id"], r["title"], r["study"], ours_text(r),
             F.verdict_text(r["verdict"]) if r["measured"] else "not measured", goal_text(r)]
            for r in s["findings"]]


def format_findings(s: dict) -> str:
    """One block per finding: verdict, the study's number, ours, the rule."""
    out = [f"intervals: {interval_word(s['n_seeds'])}"]
    for fam, head in (("study", "THE STUDY'S CLAIMS"), ("suite", "OUR QUESTIONS")):
        out.append(f"\n{head}: {F.scoreboard(s['findings'], fam)} (Holm); raw: "
                   f"{F.scoreboard(s['findings'], fam, 'verdict')}")
        for r in (x for x in s["findings"] if x["family"] == fam):
            v = F.verdict_text(r["verdict"]).upper() if r["measured"] else "NOT MEASURED"
            holm = (f"\n    Holm:  {F.verdict_text(r['holm'])} (adjusted p = {r['p_holm']:.3f})"
                    if r["measured"] and r.get("holm") else "")
            out.append(f"{r['id']}. [{v}] {r['title']}\n    claim: {r['claim']}\n    study: {r['study']}"
                       + (f" (effect {r['effect_text']})" if r.get("effect_text") else "")
                       + f"\n    ours:  {r['what']}: {ours_text(r)}"
                       + (f"\n    goal:  {goal_text(r)}" if goal_text(r) else "")
                       + (f"\n    rule:  {r['rule']}" if r["measured"] else "") + holm)
    return "\n".join(out)


TAXONOMY_HEADERS = ["checkpoint", "wrong", *FAILURE_CLASSES]


def taxonomy_rows(s: dict) -> list[list[str]]:
    return [[CHECKPOINT_NAMES[ck], *("n/a" if row[c] is None else f"{row[c]:.1f}"
                                     for c in ("wrong",) + FAILURE_CLASSES)]
            for ck in CHECKPOINTS if (row := s["taxonomy"].get(ck))]


def format_taxonomy(s: dict) -> str:
    return table(taxonomy_rows(s), TAXONOMY_HEADERS)


def format_missing(s: dict) -> str:
    lines = [f"{s['n_seeds']} seed folder(s): {', '.join(s['seeds'])}"]
    for seed, nbs in s["missing"].items():
        lines.append(f"{seed}: no metrics from {', '.join(nbs)}")
    if not s["missing"]:
        lines.append("every seed has the metrics of notebooks " + ", ".join(n[:2] for n in NOTEBOOKS))
    return "\n".join(lines)


def intervals_in_range(s: dict) -> list[str]:
    """Every interval of the summary that lies outside the range of its quantity (empty when
    all are inside): findings against their declared range, accuracies and shares in [0, 1],
    KL at or above 0."""
    bad = []
    for r in s["findings"]:
        lo, hi = r["range"]
        if r["lo"] is not None and not (lo - 1e-12 <= r["lo"] <= r["point"] <= r["hi"] <= hi + 1e-12):
            bad.append(f"finding {r['id']}: [{r['lo']}, {r['hi']}] around {r['point']} outside {r['range']}")
    for m in s["measures"]:
        lo, hi = (0.0, 1.0) if m["unit"] == "%" else (0.0, float("inf"))
        if m["lo"] is not None and not (lo - 1e-12 <= m["lo"] <= m["mean"] <= m["hi"] <= hi + 1e-12):
            bad.append(f"measure {m['name']}: [{m['lo']}, {m['hi']}] around {m['mean']}")
    return bad


# ---- the story, the two scoreboards, the limitations -----------------------------------------------
def machines(files: dict[str, dict]) -> list[str]:
    """The CPU kinds (model and vector path) and thread counts that trained the SFT models,
    from 03's provenance, each once."""
    seen = []
    for nbs in files.values():
        for segs in ((nbs.get("03_sft") or {}).get("provenance") or {}).values():
            for p in segs or []:
                k = f"{p.get('cpu')} ({p.get('cpu_capability')}, {p.get('threads')} thread(s))"
                if k not in seen:
                    seen.append(k)
    return seen


def _by_id(s: dict) -> dict:
    return {r["id"]: r for r in s["findings"]}


def _mean_part(r: dict, name: str):
    v = [x for x in (r.get("parts", {}).get(name) or {}).values() if x is not None]
    return float(np.mean(v)) if v else None


def _measure_mean(s: dict, name: str):
    m = next((m for m in s["measures"] if m["name"] == name), None)
    return None if m is None else m["mean"]


def limitations(s: dict, files: dict[str, dict]) -> list[str]:
    """What this run cannot say, generated from its records: what its n cannot decide, where
    its starts differ from the study's, which schemes build in structure, which machines ran it."""
    n = s["n_seeds"]
    by = _by_id(s)
    out = []
    # 1. what this n cannot decide
    cannot: dict[tuple, list] = {}
    for f in F.FINDINGS:
        r = by.get(f.id)
        if r is None or not r["measured"] or not r["n"]:
            continue
        miss = tuple(v for v in f.verdicts if v not in F.reachable(f, r["n"]))
        if miss:
            cannot.setdefault(miss, []).append(f.id)
    for miss, ids in cannot.items():
        shares = [f for f in F.FINDINGS if f.id in ids and f.kind == "share"]
        holds, fails = F.share_counts(10, shares[0].shares) if shares else (None, None)
        why = (f"a share of seeds needs at least {holds} of 10 seeds to hold, at most {fails} to "
               f"fail (10: the paper profile's plan)" if len(shares) == len(ids)
               else "its rule needs more seeds")
        out.append(f"At {n} seed(s), {', '.join(ids)} cannot come out "
                   f"{' or '.join(F.verdict_text(v) for v in miss)}: {why}.")
    if n == 1:
        out.append("With one seed every interval is over this seed's eval problems: it says how "
                   "sure we are about these models, not how the result moves when everything is "
                   "retrained with another seed (a one-in-five failure of the 3-digit transition "
                   "is invisible here).")
    else:
        out.append(f"Every seed is scored on the same eval problems (one draw, eval_seed): the "
                   f"intervals over {n} seeds leave out the noise of drawing other problems.")
    held = [r for r in s["findings"] if r["family"] == "study" and r["measured"] and r.get("holm")]
    raw = [r for r in held if r["verdict"] != "inconclusive"]
    kept = [r for r in raw if r["holm"] != "inconclusive"]
    if raw:
        out.append(f"Holm over the study's {len(held)} measured claims keeps {len(kept)} of the "
                   f"{len(raw)} decisive raw verdicts"
                   + (f" ({'finding' if len(raw) - len(kept) == 1 else 'findings'} "
                      f"{', '.join(r['id'] for r in raw if r not in kept)} "
                      f"{'becomes' if len(raw) - len(kept) == 1 else 'become'} inconclusive)"
                      if len(kept) < len(raw) else "")
                   + "; the scoreboards count Holm's.")
    # 2. where the starts differ from the study's
    start3 = _mean_part(by.get("3", {}), "rl/targeted/sft/general/acc")
    if start3 is not None:
        out.append(f"Finding 3's RL starts from our finished targeted SFT at "
                   f"{F.fmt_value(start3, '%')}% greedy on general; the study's started at 80.7%. "
                   f"From our start at most {100 * (1 - start3):.1f} points are left to gain, "
                   f"against the study's +10.0.")
    beta0 = _measure_mean(s, "beta/start/general/acc")
    if beta0 is not None:
        out.append(f"The beta scan (4a) starts from the mid-transition targeted checkpoint at "
                   f"{F.fmt_value(beta0, '%')}% on general; the study's beta runs came from a "
                   f"finished model (91.4-91.6% after RL).")
    # 3. schemes that build in structure
    schemes = []
    for nbs in files.values():
        for nb in ("03_sft", "08_lengths"):
            p = (nbs.get(nb) or {}).get("params", {})
            schemes += [p.get("pos")] + list(p.get("positions") or [])
    for sch in dict.fromkeys(x for x in schemes if x in scheme_info.PLACED):
        out.append(scheme_info.STRUCTURE[sch] + ".")
    # 4. machines
    ms = s.get("machines") or []
    if len(ms) == 1:
        out.append(f"Every SFT model was trained on one CPU kind, {ms[0]}: on another, float "
                   f"sums differ and a chaotic run can end elsewhere (docs/reproducibility.md).")
    elif ms:
        out.append(f"The SFT models were trained on {len(ms)} CPU kinds ({'; '.join(ms)}): seeds "
                   f"are not comparable bit for bit (docs/reproducibility.md).")
    return out


def value_text(r: dict) -> str:
    """A finding's number with its interval, without the per-seed list."""
    if not r["measured"] or not r["n"] or (r["kind"] == "share" and r["n"] > 1):
        return ours_text(r)
    u, signed = r["unit"], r["kind"] == "linear" and r["range"][0] < 0
    return (f"{F.fmt_value(r['point'], u, signed)}{F.unit_word(u, signed)} "
            f"{F.fmt_interval(r['lo'], r['hi'], u, signed)}")


CLAIM_HEADERS = ["#", "claim", "the study", "ours [95% interval]", "verdict", "Holm", "n"]


def claim_rows(s: dict, family: str) -> list[list[str]]:
    """One row per finding of ``family``: the study's number (its effect where it has one),
    ours, the raw verdict, Holm's (with the adjusted p) and n."""
    rows = []
    for r in s["findings"]:
        if r["family"] != family:
            continue
        study = r["study"] + (f" (effect {r['effect_text']})" if r.get("effect_text") else "")
        v = F.verdict_text(r["verdict"]) if r["measured"] else "not measured"
        holm = ("" if not r["measured"] or r.get("holm") is None else
                f"{F.verdict_text(r['holm'])} (p = {r['p_holm']:.3f})")
        rows.append([r["id"], r["title"], study, value_text(r), v, holm, str(r["n"])])
    return rows


def story(s: dict) -> list[str]:
    """The answer first, in a few generated sentences: the two scoreboards, then what RL did
    from each kind of start."""
    by = _by_id(s)
    n = s["n_seeds"]
    one = " (this seed only)" if n == 1 else ""
    out = [f"Of the study's seven claims, on {n} seed(s){one}: {F.scoreboard(s['findings'], 'study')} "
           f"(Holm-adjusted; raw: {F.scoreboard(s['findings'], 'study', 'verdict')}).",
           f"Our own questions: {F.scoreboard(s['findings'], 'suite')} (Holm within them; raw: "
           f"{F.scoreboard(s['findings'], 'suite', 'verdict')})."]
    parts = []
    for fid, words in (("3", "from the finished targeted SFT model"),
                       ("3b", "from starts with headroom"),
                       ("8b", "against more SFT at equal compute, from the mid-transition checkpoint"),
                       ("4c", "forgetting on buckets it never practises (before - after)")):
        r = by.get(fid)
        if r and r["measured"] and r["n"]:
            parts.append(f"{words}: {value_text(r)} ({F.verdict_text(r['verdict'])})")
    if parts:
        out.append("RL on general, " + "; ".join(parts) + ".")
    return out
