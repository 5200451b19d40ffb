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
from ..core import stats
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

# The measures of the headline table: (record, label, notebook, published number or range).
HEADLINE = (
    ("sft/control/low_sum/acc", "SFT control: low_sum (held-out)", "03_sft", 0.648),
    ("sft/targeted/low_sum/acc", "SFT targeted: low_sum (held-out)", "03_sft", 0.854),
    ("sft/control/mixed/acc", "SFT control: mixed (held-out)", "03_sft", None),
    ("sft/targeted/mixed/acc", "SFT targeted: mixed (held-out)", "03_sft", None),
    ("sft/control/mixed3/acc", "SFT control: mixed3", "03_sft", None),
    ("sft/targeted/mixed3/acc", "SFT targeted: mixed3", "03_sft", None),
    ("sft/control/general/acc", "SFT control: general", "03_sft", None),
    ("sft/targeted/general/acc", "SFT targeted: general", "03_sft", 0.807),
    ("format/plain/general/acc", "SFT targeted, plain: general", "03_sft", None),
    ("format/scratchpad/general/acc", "SFT targeted, scratchpad: general", "03_sft", None),
    ("format/reversed/ood_long/acc", "SFT targeted, reversed: ood_long", "03_sft", None),
    ("passk/control/general/pass@8", "SFT control: pass@8, general", "04_pass_at_k", 0.81),
    ("passk/targeted/general/pass@8", "SFT targeted: pass@8, general", "04_pass_at_k", 0.99),
    ("rl/targeted/rl/general/acc", "SFT+RL targeted: general", "05_kl_rl", 0.907),
    ("rl/targeted/rl/general/sampled_parse", "SFT+RL targeted: parse rate of samples, general",
     "05_kl_rl", 1.0),
    ("rl/control/sft/unpractised/acc", "SFT control: d1 + d2_* (RL never practises them)",
     "05_kl_rl", None),
    ("rl/control/rl/unpractised/acc", "SFT+RL control: d1 + d2_*", "05_kl_rl", None),
    ("rl/control/rl/low_sum/acc", "SFT+RL control: low_sum (held-out)", "05_kl_rl", None),
    ("beta/0.02/general/acc", "beta = 0.02: general", "06_beta_scan", (0.914, 0.916)),
    ("beta/0.05/general/acc", "beta = 0.05: general", "06_beta_scan", (0.914, 0.916)),
    ("beta/0.1/general/acc", "beta = 0.1: general", "06_beta_scan", (0.914, 0.916)),
    ("beta/0/kl", "beta = 0: exact KL to the start", "06_beta_scan", None),
    ("beta/0.5/kl", "beta = 0.5: exact KL to the start", "06_beta_scan", None),
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
            out.append({"seed": s, "start": k, **a, "k": max(top),
                        "pass@k": rec[f"headroom/{k}/start/pass@{max(top)}"],
                        "gain_greedy": b["greedy"] - a["greedy"], "gain_pass@1": b["pass@1"] - a["pass@1"]})
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
    for name, label, nb, published in HEADLINE:
        m = measure(name, nb, files, "nats" if name.endswith("/kl") else "%")
        m.update(label=label, notebook=nb, published=list(published) if isinstance(published, tuple)
                 else published)
        measures.append(m)
    return {"run_root": Path(run_root).as_posix(), "seeds": seeds, "n_seeds": len(seeds),
            "missing": missing, "published_source": PUBLISHED_SOURCE,
            "findings": results, "measures": measures, "taxonomy": taxonomy(files),
            "headroom": headroom(files),
            "setup": setup(files), "level": stats.LEVEL}


# ---- text tables ----------------------------------------------------------------------------------
def interval_word(n_seeds: int) -> str:
    return ("95% percentile bootstrap over seeds (exact binomial for k of n seeds)" if n_seeds > 1
            else "this seed only: 95% percentile bootstrap over its eval problems")


def fmt_published(pub, unit: str) -> str:
    if pub is None:
        return ""
    if isinstance(pub, (list, tuple)):
        return f"{F.fmt_value(pub[0], unit)}-{F.fmt_value(pub[1], unit)}"
    return F.fmt_value(pub, unit)


MEASURE_HEADERS = ["measure", "unit", "study", "mean", "95% interval", "n", "per seed"]


def measure_rows(s: dict) -> list[list[str]]:
    rows = []
    for m in s["measures"]:
        if not m["n"]:
            continue
        u = m["unit"]
        rows.append([m["label"], "%" if u == "%" else u, fmt_published(m["published"], u),
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
             r["verdict"] if r["measured"] else "not measured", goal_text(r)] for r in s["findings"]]


def format_findings(s: dict) -> str:
    """One block per finding: verdict, the study's number, ours, the rule."""
    out = [f"intervals: {interval_word(s['n_seeds'])}"]
    for r in s["findings"]:
        v = r["verdict"].upper() if r["measured"] else "NOT MEASURED"
        out.append(f"{r['id']}. [{v}] {r['title']}\n    claim: {r['claim']}\n    study: {r['study']}"
                   f"\n    ours:  {r['what']}: {ours_text(r)}"
                   + (f"\n    goal:  {goal_text(r)}" if goal_text(r) else "")
                   + (f"\n    rule:  {r['rule']}" if r["measured"] else ""))
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
