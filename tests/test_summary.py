"""reasonlib.summary: t quantiles, mean and t-interval, verdict rules, and the cross-seed
summary of a hand-made run folder (metrics.json files shaped like notebooks 03-07 write)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from reasonlib import summary as S

SEED_TEXT = Path(__file__).resolve().parent.parent.parent / "shared" / "seed" / "000_dec7c5113c451fd3.txt"


# ---- statistics ------------------------------------------------------------------------------------
@pytest.mark.parametrize("df,q", [(1, 12.7062047), (2, 4.3026527), (3, 3.1824463), (4, 2.7764451),
                                  (9, 2.2621572), (30, 2.0422725), (200, 1.9718962)])
def test_t_quantile_975_matches_tables(df, q):
    assert S.t_quantile(0.975, df) == pytest.approx(q, abs=2e-6)


def test_t_quantile_other_levels_and_bad_input():
    assert S.t_quantile(0.95, 5) == pytest.approx(2.0150484, abs=2e-6)
    assert S.t_quantile(0.5, 3) == pytest.approx(0.0, abs=1e-9)
    # df = 1 is the Cauchy distribution: quantile tan(pi (p - 1/2))
    assert S.t_quantile(0.9, 1) == pytest.approx(math.tan(math.pi * 0.4), abs=1e-6)
    for p, df in [(0.4, 3), (1.0, 3), (0.975, 0)]:
        with pytest.raises(ValueError):
            S.t_quantile(p, df)


def test_mean_ci_by_hand():
    s = S.mean_ci([1.0, 2.0, 3.0])
    half = 4.3026527 * 1.0 / math.sqrt(3)            # t(0.975, 2) * sd / sqrt(n), sd = 1
    assert s["n"] == 3 and s["mean"] == pytest.approx(2.0) and s["sd"] == pytest.approx(1.0)
    assert (s["lo"], s["hi"]) == (pytest.approx(2 - half, abs=1e-6), pytest.approx(2 + half, abs=1e-6))
    s = S.mean_ci([0.5, 0.5, 0.5, 0.5])
    assert s["lo"] == s["hi"] == s["mean"] == 0.5


def test_mean_ci_small_n_and_missing_values():
    assert S.mean_ci([]) == {"n": 0, "mean": None, "sd": None, "lo": None, "hi": None}
    assert S.mean_ci([0.7]) == {"n": 1, "mean": 0.7, "sd": None, "lo": None, "hi": None}
    # None, NaN, inf and non-numbers are left out
    s = S.mean_ci([0.2, None, float("nan"), float("inf"), "x", True, 0.4])
    assert s["n"] == 2 and s["mean"] == pytest.approx(0.3)


@pytest.mark.parametrize("diffs,verdict", [
    ([0.10, 0.20, 0.15], "reproduced"),
    ([0.10, 0.10], "reproduced"),                 # sd 0: the interval is the point 0.1
    ([-0.10, -0.20, -0.15], "not reproduced"),    # interval below 0
    ([-0.05, 0.10, -0.10], "not reproduced"),     # n >= 3, interval spans 0, mean < 0
    ([-0.05, 0.04], "inconclusive"),              # n = 2, mean < 0 but interval spans 0
    ([0.30, -0.20, 0.10], "inconclusive"),        # mean > 0, interval spans 0
    ([0.0, 0.0, 0.0], "inconclusive"),            # no effect either way
    ([0.5], "inconclusive"),                      # n < 2: no interval
    ([], "inconclusive"),
    ([0.20, None, 0.21, 0.22], "reproduced"),     # missing seeds are skipped
])
def test_verdict_greater(diffs, verdict):
    assert S.verdict_greater(diffs) == verdict


@pytest.mark.parametrize("spreads,verdict", [
    ([0.01, 0.02, 0.015], "reproduced"),
    ([0.20, 0.25, 0.30], "not reproduced"),
    ([0.04, 0.07, 0.06], "not reproduced"),       # n >= 3, mean 0.057 > tol, interval spans it
    ([0.01, 0.09], "inconclusive"),
    ([0.0], "inconclusive"),
])
def test_verdict_within(spreads, verdict):
    assert S.verdict_within(spreads, tol=0.05) == verdict


def test_presence_and_verdict_present():
    assert S.presence([3, 4, 5]) == "present"
    assert S.presence([0, 0, 0]) == "absent"
    assert S.presence([0, 0]) == "unclear"        # too few seeds to call it absent
    assert S.presence([5, 0, 0]) == "unclear"
    assert S.presence([7]) == "unclear"
    assert S.verdict_present({"a": [3, 4, 5], "b": [2, 3, 2]}) == "reproduced"
    assert S.verdict_present({"a": [3, 4, 5], "b": [0, 0, 0]}) == "not reproduced"
    assert S.verdict_present({"a": [3, 4, 5], "b": [0, 1, 0]}) == "inconclusive"


def test_published_numbers_match_the_seed_text():
    if not SEED_TEXT.is_file():
        pytest.skip("../shared/seed not present")
    text = SEED_TEXT.read_text()
    P = S.PUBLISHED
    for v in (P["low_sum"]["control"], P["low_sum"]["targeted"], P["rl_general"]["before"],
              P["rl_general"]["after"], *P["beta_general"]):
        assert f"{100 * v:.1f}%" in text, v
    for v in (P["pass8"]["control"], P["pass8"]["targeted"], *P["beta_pass8"]):
        assert f"{100 * v:.0f}%" in text, v
    assert "0.02/0.05/0.10" in text and "12+3" in text


# ---- a hand-made run folder -------------------------------------------------------------------------
def _ev(acc, sampled=None, pass8=None):
    """One bucket as metrics.full_eval writes it (05, 06)."""
    e = {"n": 50, "acc": acc, "acc_ci": [0, 1], "parse": 1.0, "parse_ci": [0.9, 1.0],
         "sampled_acc": acc if sampled is None else sampled, "sampled_acc_ci": [0, 1],
         "sampled_parse": 1.0, "pass": {}}
    if pass8 is not None:
        e["pass"] = {"1": {"value": e["sampled_acc"], "ci": [0, 1]}, "8": {"value": pass8, "ci": [0, 1]}}
    return e


TWO_BY_TWO = {("control", "SFT"): 0.50, ("control", "SFT+RL"): 0.55,
              ("targeted", "SFT"): 0.95, ("targeted", "SFT+RL"): 0.96}
FORMAT_ACC = {"plain": (0.50, 0.0), "reversed": (0.90, 0.10), "scratchpad": (0.80, 0.05)}


def write_seed(seed_dir: Path, low_sum=(0.6, 0.8), pass8=(0.8, 0.95), rl=(0.8, 0.9),
               control_rl=0.7, betas=None, fails=(5, 3, 2, 0), ks_has_8=True,
               skip=(), two_by_two=None, formats=None, parse_after=1.0) -> Path:
    """metrics.json files of notebooks 01-07 for one seed, with the given headline numbers.

    ``fails`` = (targeted digit_sub, targeted operand_dup, control format, targeted format),
    counted in the named buckets of 07. ``two_by_two[(arm, stage)]`` is 05's greedy accuracy
    on low_sum and mixed; ``formats[fmt]`` = (general, ood_long) accuracy of 03's format arms."""
    betas = betas or {"0": 0.85, "0.02": 0.90, "0.05": 0.91, "0.1": 0.905, "0.5": 0.88}
    two_by_two = two_by_two or TWO_BY_TWO
    formats = formats or FORMAT_ACC
    buckets = ("low_sum", "mixed", "general")
    m = {
        "01_tokenizer_model": {"n_params": 1000},
        "02_data_curricula": {"tokens": {"control": 100, "targeted": 101}},
        "03_sft": {c: {"buckets": {b: {"n": 100, "acc": acc, "acc_ci": [0, 1], "parse": 1.0,
                                        "parse_ci": [0.9, 1]} for b in buckets},
                       "tokens": 100, "steps": 3, "final_loss": 1.0}
                   for c, acc in zip(("control", "targeted"), low_sum)},
        "04_pass_at_k": {c: {"general": {"greedy_acc": 0.5, "sampled_acc": 0.4, "n": 50,
                                         "pass": ({"8": {"value": p, "ci": [0, 1]}} if ks_has_8
                                                  else {"4": {"value": p, "ci": [0, 1]}})}}
                         for c, p in zip(("control", "targeted"), pass8)},
        "05_kl_rl": {"targeted/SFT": {"general": _ev(rl[0], pass8=0.9)},
                     "targeted/SFT+RL": {"general": _ev(rl[1], pass8=0.95)},
                     "control/SFT": {"general": _ev(0.6, pass8=0.8)},
                     "control/SFT+RL": {"general": _ev(control_rl, pass8=0.85)},
                     "headline": {"arm": "targeted", "bucket": "general", "parse_after": parse_after,
                                  "final_kl": 0.01, "sampled_before": rl[0], "sampled_after": rl[1],
                                  "greedy_before": rl[0], "greedy_after": rl[1], "beta": 0.05}},
        "06_beta_scan": {**{b: {"buckets": {"general": _ev(a, pass8=0.97)}, "kl": 0.01 / (1 + float(b)),
                                "verdict": "x"} for b, a in betas.items()},
                         "start": {"general": _ev(0.8)}},
        "07_failure_analysis": {"counts": {}, "n_per_bucket": 40, "checkpoints": []},
    }
    for (c, stage), acc in two_by_two.items():
        m["05_kl_rl"][f"{c}/{stage}"].update(low_sum=_ev(acc), mixed=_ev(acc - 0.05))
    m["03_sft"]["formats"] = {f: {"arm": "targeted", "tokens": 100, "steps": 3, "buckets": {
        "general": {"n": 100, "acc": g, "acc_ci": [0, 1], "parse": 1.0, "parse_ci": [0.9, 1]},
        "ood_long": {"n": 100, "acc": o, "acc_ci": [0, 1], "parse": 0.9, "parse_ci": [0.8, 1]}}}
        for f, (g, o) in formats.items()}
    zero = {c: 0 for c in ("format", "operand_dup", "carry", "digit_count", "digit_sub", "other")}
    ds, od, cf, tf = fails
    for ck in S.FAILURE_CHECKPOINTS:
        for b in ("d1", "mixed", "low_sum", "general"):
            m["07_failure_analysis"]["counts"][f"{ck}|{b}"] = dict(zero)
    c = m["07_failure_analysis"]["counts"]
    c["SFT targeted|mixed"].update(digit_sub=ds - ds // 2, operand_dup=od)
    c["SFT targeted|low_sum"].update(digit_sub=ds // 2)
    c["SFT targeted|d1"].update(digit_sub=100, format=tf)    # d1 is not a mixed-digit bucket
    c["SFT control|general"].update(format=cf)
    for nb, d in m.items():
        if nb in skip:
            continue
        (seed_dir / nb).mkdir(parents=True, exist_ok=True)
        (seed_dir / nb / "metrics.json").write_text(json.dumps(d))
    return seed_dir


@pytest.fixture
def three_seeds(tmp_path):
    root = tmp_path / "quick"
    write_seed(root / "seed-0", low_sum=(0.60, 0.80), pass8=(0.80, 0.97), rl=(0.80, 0.90),
               fails=(4, 2, 3, 0))
    write_seed(root / "seed-2", low_sum=(0.62, 0.85), pass8=(0.78, 0.99), rl=(0.81, 0.92),
               fails=(6, 3, 2, 0))
    write_seed(root / "seed-10", low_sum=(0.65, 0.86), pass8=(0.83, 0.98), rl=(0.79, 0.91),
               fails=(5, 2, 3, 0))
    (root / "summary").mkdir()              # not a seed folder
    (root / "seed-notes.txt").write_text("") # not a folder
    return root


def test_find_seeds_numeric_order(three_seeds):
    assert [p.name for p in S.find_seeds(three_seeds)] == ["seed-0", "seed-2", "seed-10"]


def test_summarize_three_seeds(three_seeds):
    s = S.summarize(three_seeds)
    assert s["seeds"] == ["seed-0", "seed-2", "seed-10"] and s["n_seeds"] == 3
    assert s["missing"] == {} and s["missing_values"] == {}
    m = s["metrics"]
    assert m["sft/low_sum/targeted"]["per_seed"] == {"seed-0": 0.80, "seed-2": 0.85, "seed-10": 0.86}
    assert m["sft/low_sum/targeted"]["mean"] == pytest.approx(0.83666667)
    assert m["sft/low_sum/targeted"]["published"] == 0.854
    assert m["pass8/general/control"]["published"] == 0.81
    assert m["rl/targeted/greedy_after"]["published"] == 0.907
    assert m["beta/0.05/greedy"]["published"] == [0.914, 0.916]
    assert m["beta/0.5/greedy"]["published"] is None
    # only the mixed-digit buckets count (d1 holds 100 digit substitutions in every seed)
    assert m["fail/SFT targeted/digit_sub/mixed+low_sum"]["per_seed"] == {"seed-0": 4, "seed-2": 6,
                                                                          "seed-10": 5}
    assert m["fail/SFT control/format/all buckets"]["per_seed"] == {"seed-0": 3, "seed-2": 2, "seed-10": 3}
    assert s["order"] == list(m) and s["order"][0].startswith("sft/")
    v = {f["id"]: f for f in s["findings"]}
    assert v["low_sum"]["verdict"] == "reproduced"
    assert v["low_sum"]["per_seed"] == pytest.approx({"seed-0": 0.20, "seed-2": 0.23, "seed-10": 0.21})
    assert v["pass8"]["verdict"] == "reproduced"
    assert v["rl_general"]["verdict"] == "reproduced"
    assert v["curriculum_vs_rl_low_sum"]["verdict"] == "reproduced"  # +0.45 - 0.05 in every seed
    assert v["curriculum_vs_rl_low_sum"]["per_seed"]["seed-2"] == pytest.approx(0.40)
    assert v["curriculum_vs_rl_mixed"]["verdict"] == "reproduced"
    assert v["formats"]["verdict"] == "reproduced"                  # reversed 0.9 vs plain 0.5
    assert "scratchpad 80.0 [80.0, 80.0]% (ood_long 5.0 [5.0, 5.0]%)" in v["formats"]["why"]
    # goals: targeted low_sum 83.7% < 95%; RL reaches 91% < 95% although its gain is clear
    assert v["low_sum"]["goal_met"] is False and v["low_sum"]["beat"] is False
    assert v["rl_general"]["goal_met"] is False and "gain interval above 0 (yes)" in v["rl_general"]["goal"]
    assert v["beta_stable"]["spread_of_means"] == pytest.approx(0.01) and v["beta_stable"]["goal_met"]
    assert "beta=0.02 binds" in v["beta_stable"]["why"] and "beta=0.5 binds" in v["beta_stable"]["why"]
    assert [f["number"] for f in s["findings"]] == ["1", "2", "3", "4", "5", "5", "6", "7", "7"]
    assert v["beta_stable"]["verdict"] == "reproduced"              # spread 0.01 in every seed
    assert v["beta_stable"]["per_seed"]["seed-0"] == pytest.approx(0.01)
    assert v["failure_classes"]["verdict"] == "reproduced"
    assert v["format_fixed"]["verdict"] == "reproduced"             # 3, 2, 3 vs 0
    for f in s["findings"]:
        assert f["verdict"] in S.VERDICTS and f["n"] == 3 and f["lo"] <= f["mean"] <= f["hi"]
        assert "95% t-interval [" in f["why"]
    json.dumps(s)                                                   # JSON-able as it is


def test_findings_go_the_other_way(tmp_path):
    root = tmp_path / "r"
    for i, (c, t) in enumerate([(0.8, 0.6), (0.82, 0.61), (0.79, 0.65)]):
        write_seed(root / f"seed-{i}", low_sum=(c, t), rl=(0.9, 0.8 + i / 100),
                   betas={"0.02": 0.5, "0.05": 0.9, "0.1": 0.7}, fails=(0, 0, 0, 0))
    v = {f["id"]: f["verdict"] for f in S.summarize(root)["findings"]}
    assert v["low_sum"] == "not reproduced"
    assert v["rl_general"] == "not reproduced"
    assert v["beta_stable"] == "not reproduced"                     # spread 0.4
    assert v["failure_classes"] == "not reproduced"                 # never occurs in 3 seeds
    assert v["format_fixed"] == "inconclusive"                      # 0 vs 0 everywhere


def test_stability_of_a_model_that_cannot_add_is_inconclusive(tmp_path):
    for i in range(3):
        write_seed(tmp_path / f"seed-{i}", betas={"0.02": 0.0, "0.05": 0.01, "0.1": 0.0})
    f = next(f for f in S.summarize(tmp_path)["findings"] if f["id"] == "beta_stable")
    assert f["hi"] < S.STABLE_TOL and f["verdict"] == "inconclusive"
    assert "trivially stable" in f["why"] and "mean accuracy over these arms 0.3%" in f["why"]


def test_one_seed_is_inconclusive_and_shows_na(tmp_path):
    write_seed(tmp_path / "seed-0")
    s = S.summarize(tmp_path)
    assert all(f["verdict"] == "inconclusive" and f["lo"] is None for f in s["findings"])
    text = S.format_headline(s)
    assert "n/a" in text and "64.8" in text and "91.4-91.6" in text
    row = next(r for r in S.headline_rows(s) if r[0] == "SFT targeted: greedy acc, low_sum")
    assert row == ["SFT targeted: greedy acc, low_sum", "%", "85.4", "80.0", "n/a", "1", "80.0"]
    assert "needs >= 2 seeds" in S.format_findings(s)
    assert len(S.headline_rows(s)) < len(S.headline_rows(s, only_headline=False))


def test_missing_notebooks_and_values_are_reported(tmp_path):
    write_seed(tmp_path / "seed-0", skip=("06_beta_scan", "07_failure_analysis"))
    write_seed(tmp_path / "seed-1", ks_has_8=False)
    write_seed(tmp_path / "seed-2")
    (tmp_path / "seed-2" / "05_kl_rl" / "metrics.json").write_text("{not json")
    s = S.summarize(tmp_path)
    assert s["missing"] == {"seed-0": ["06_beta_scan", "07_failure_analysis"],
                            "seed-2": ["05_kl_rl"]}
    assert s["missing_values"] == {"seed-1": ["pass8/general/control", "pass8/general/targeted"]}
    m = s["metrics"]
    assert m["pass8/general/targeted"]["n"] == 2 and "seed-1" not in m["pass8/general/targeted"]["per_seed"]
    assert m["rl/targeted/greedy_after"]["n"] == 2
    assert m["beta/0.05/greedy"]["n"] == 2
    text = S.format_missing(s)
    assert "seed-0: no metrics from 06_beta_scan, 07_failure_analysis" in text
    assert "seed-1: metrics present but without pass8/general/control" in text
    v = {f["id"]: f for f in s["findings"]}
    assert v["pass8"]["n"] == 2 and v["rl_general"]["n"] == 2


def test_seed_metrics_of_nothing_is_all_none():
    m = S.seed_metrics({})
    assert m and all(v is None for v in m.values())


def test_summarize_bad_roots(tmp_path):
    with pytest.raises(S.SummaryError, match=str(tmp_path / "nope")):
        S.summarize(tmp_path / "nope")
    (tmp_path / "empty" / "seed-0.txt").parent.mkdir()
    (tmp_path / "empty" / "seed-0.txt").write_text("")
    with pytest.raises(S.SummaryError, match="no seed-"):
        S.summarize(tmp_path / "empty")
    assert issubclass(S.SummaryError, ValueError)


# ---- the paper-profile findings: goals, the 2 x 2, formats, taxonomy ---------------------------------
def test_goals_met_and_beating_the_study(tmp_path):
    for i in range(3):
        write_seed(tmp_path / f"seed-{i}", low_sum=(0.3, 0.97 + i / 100), pass8=(0.8, 0.996 + i / 1000),
                   rl=(0.95, 0.97 + i / 200), betas={"0": 0.9, "0.02": 0.97, "0.05": 0.975,
                                                    "0.1": 0.972 + i / 1000})
    v = {f["id"]: f for f in S.summarize(tmp_path)["findings"]}
    assert v["low_sum"]["goal_met"] is True and v["low_sum"]["beat"] is True
    assert v["pass8"]["goal_met"] is True and v["pass8"]["beat"] is True
    assert v["rl_general"]["goal_met"] is True and v["rl_general"]["beat"] is True
    assert v["beta_stable"]["goal_met"] is True and v["beta_stable"]["beat"] is True
    assert v["beta_stable"]["spread_of_means"] < 0.01


def test_goal_fails_on_one_unparsable_seed_and_spread_of_means(tmp_path):
    for i in range(3):
        write_seed(tmp_path / f"seed-{i}", rl=(0.95, 0.97 + i / 200), parse_after=0.999 if i == 1 else 1.0,
                   betas={"0.02": 0.90, "0.05": 0.95, "0.1": 0.93})
    v = {f["id"]: f for f in S.summarize(tmp_path)["findings"]}
    assert "parse rate 100% in every seed (no)" in v["rl_general"]["goal"]
    assert v["rl_general"]["goal_met"] is False
    assert v["beta_stable"]["spread_of_means"] == pytest.approx(0.05) and v["beta_stable"]["goal_met"] is False
    assert "KL(beta=0)" not in v["beta_stable"]["why"]           # no beta = 0 arm: no binding claim


def test_two_by_two_where_rl_matters_more(tmp_path):
    t = {("control", "SFT"): 0.50, ("control", "SFT+RL"): 0.90, ("targeted", "SFT"): 0.60,
         ("targeted", "SFT+RL"): 0.95}
    for i in range(3):
        write_seed(tmp_path / f"seed-{i}", two_by_two={k: a + i / 100 for k, a in t.items()},
                   formats={"plain": (0.9, 0.1), "reversed": (0.5 + i / 100, 0.0)})
    s = S.summarize(tmp_path)
    v = {f["id"]: f for f in s["findings"]}
    # (0.60 - 0.50) - (0.90 - 0.50) = -0.30 in every seed
    assert v["curriculum_vs_rl_low_sum"]["verdict"] == "not reproduced"
    assert v["curriculum_vs_rl_low_sum"]["mean"] == pytest.approx(-0.30)
    assert v["formats"]["verdict"] == "not reproduced"
    # only the formats 03 trained are expected: no scratchpad keys, nothing reported missing
    assert not any(k.startswith("format/scratchpad") for k in s["metrics"])
    assert s["missing_values"] == {}


def test_old_03_without_formats_is_reported_missing(tmp_path):
    d = write_seed(tmp_path / "seed-0")
    f = d / "03_sft" / "metrics.json"
    m = json.loads(f.read_text())
    del m["formats"]
    f.write_text(json.dumps(m))
    s = S.summarize(tmp_path)
    assert "format/plain/general/acc" in s["missing_values"]["seed-0"]


def test_taxonomy_and_findings_tables(three_seeds):
    s = S.summarize(three_seeds)
    means = dict(S.taxonomy_means(s))
    assert means["SFT targeted"][2 + S.FAILURE_CLASSES.index("digit_sub")] == pytest.approx(5.0)
    assert S.taxonomy_means({"metrics": {}})[0] == ("SFT control", [None] * (2 + len(S.FAILURE_CLASSES)))
    assert S.taxonomy_rows({"metrics": {}})[0][1:] == ["n/a"] * (2 + len(S.FAILURE_CLASSES))
    rows = {r[0]: r for r in S.taxonomy_rows(s)}
    assert list(rows) == list(S.FAILURE_CHECKPOINTS)
    h = S.TAXONOMY_HEADERS
    # digit_sub in mixed+low_sum for targeted SFT: 4, 6, 5 -> mean 5.0; operand_dup 2, 3, 2
    assert rows["SFT targeted"][h.index("digit_sub")] == "5.0"
    assert rows["SFT targeted"][h.index("operand_dup")] == "2.3"
    assert rows["SFT targeted"][h.index("wrong (mixed+low_sum)")] == "7.3"
    # all buckets include d1's 100 digit substitutions
    assert rows["SFT targeted"][h.index("wrong (all buckets)")] == "107.3"
    assert rows["SFT+RL control"][h.index("wrong (all buckets)")] == "0.0"
    text = S.format_findings_table(s)
    assert text.count("[reproduced, n=3]") == 9 and "goal:  targeted >= 95%: NOT met" in text
    assert "does not beat the study" in text
    assert S.findings_rows(s)[0][:2] == ["1", "low_sum: targeted vs control SFT"]
