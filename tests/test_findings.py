"""The verdict rules as a specification (reasonlib.report.findings): sizes as well as signs,
equivalence for "no change", shares with their k of n, Holm within a family, and power by
construction at the planned seed counts."""
import pytest

from reasonlib.report import findings as F
from reasonlib.study import runner

BY_ID = {f.id: f for f in F.FINDINGS}
PLANNED = sorted({len(runner.planned_seeds(p)) for p in ("quick", "paper")})


def test_the_study_has_seven_claims_and_the_rest_are_our_questions():
    study = [f.id for f in F.FINDINGS if f.family == "study"]
    assert study == ["1a", "2", "3", "4a", "5a", "7a", "7b"]
    assert all(f.family == "suite" for f in F.FINDINGS if f.id not in study)
    assert [BY_ID[i].effect for i in ("1a", "2", "3")] == pytest.approx([0.206, 0.18, 0.10])


@pytest.mark.parametrize("n", PLANNED)
@pytest.mark.parametrize("fid", list(BY_ID))
def test_every_rule_can_give_each_of_its_verdicts_at_the_planned_n(fid, n):
    """Power by construction: made-to-order records of n seeds (one seed: of the quick
    profile's eval problems) reach every verdict the rule allows."""
    f = BY_ID[fid]
    n_problems = 100   # quick.yaml's eval_n: the probe; n_eval is larger, which only helps
    got = F.reachable(f, n, n_problems)
    assert set(f.verdicts) <= got, f"{fid} at n = {n}: cannot give {set(f.verdicts) - got}"


def test_share_rules_cannot_decide_at_five_seeds_and_say_so():
    """5 of 5 is P = 1/32 > 2.5% under "half": 'most seeds' needs n >= 6; at 10, 9 of 10."""
    assert F.share_counts(5) == (None, None)
    assert F.share_counts(10) == (9, 1)
    assert F.reachable(BY_ID["8"], 5) == {"inconclusive"}
    assert "at least 9 of 10 seeds" in F.rule_text(BY_ID["8"], 10)
    assert "no count of 5 seeds" in F.rule_text(BY_ID["8"], 5)


def _verdict(f, values):
    return F.evaluate(f, F.synthetic(f, values))


def test_a_study_claim_moves_from_smaller_to_reproduced_across_the_size_bound():
    """Finding 3 (the study: +10 points from 80.7%): five seeds gaining 1-3 points are
    smaller than the study's; moving one seed from +3 to +5 points puts the interval's top
    into the band [+5, +20] consistent with it."""
    f = BY_ID["3"]
    base = [0.01, 0.02, 0.03, 0.02, 0.03]
    r = _verdict(f, base)
    assert r["verdict"] == "smaller" and r["lo"] > 0 and r["hi"] < F.size_band(f)[0]
    r = _verdict(f, base[:-1] + [0.05])
    assert r["verdict"] == "reproduced" and r["lo"] > 0 and r["hi"] >= F.size_band(f)[0]
    assert "within a factor of two" in r["rule"]


def test_an_interval_that_rules_out_the_study_size_is_not_reproduced_not_inconclusive():
    """Finding 2 on the paper run: -0.4 [-1.2, +0.9] rules out +18 points of pass@8."""
    r = _verdict(BY_ID["2"], [-0.012, -0.004, 0.009, -0.006, 0.001])
    assert r["lo"] < 0 < r["hi"] and r["verdict"] == "not reproduced"
    assert "rules out the study's size" in " ".join(r["sentences"])
    r = _verdict(BY_ID["2"], [-0.10, 0.05, 0.20, -0.05, 0.12])     # wide: reaches the band
    assert r["verdict"] == "inconclusive"


def test_stability_is_an_equivalence_test_that_can_be_reproduced():
    f = BY_ID["4a"]
    assert f.rule == F.Rule("equivalent", F.STABLE_MARGIN)
    assert _verdict(f, [0.001, -0.002, 0.0, 0.002, -0.001])["verdict"] == "reproduced"
    assert _verdict(f, [0.05, 0.04, 0.06, 0.05, 0.045])["verdict"] == "not reproduced"
    assert _verdict(f, [0.02, -0.02, 0.0, 0.01, -0.01])["verdict"] == "inconclusive"


def test_the_remaining_rules_can_fail():
    """7a ("a share above 0" could never fail) and 7b (inconclusive with nothing to fix)."""
    assert F.evaluate(BY_ID["7a"], F.synthetic(BY_ID["7a"], [0.0]))["verdict"] == "not reproduced"
    assert F.evaluate(BY_ID["7b"], F.synthetic(BY_ID["7b"], [0.002]))["verdict"] == "reproduced"
    assert F.evaluate(BY_ID["7b"], F.synthetic(BY_ID["7b"], [0.2]))["verdict"] == "not reproduced"


def test_our_questions_are_supported_never_reproduced():
    r = _verdict(BY_ID["8b"], [0.05, 0.06, 0.04, 0.05, 0.07])
    assert r["verdict"] == "supported"
    r = _verdict(BY_ID["8b"], [-0.05, -0.06, -0.04, -0.05, -0.07])
    assert r["verdict"] == "not supported"


def test_holm_adjusts_each_family_apart():
    rs = [{"family": "study", "measured": True, "p": p, "verdict": "reproduced"} for p in (0.001, 0.02)]
    rs += [{"family": "suite", "measured": True, "p": 0.02, "verdict": "supported"}]
    F.adjust(rs)
    assert [r["p_holm"] for r in rs] == [pytest.approx(0.002), pytest.approx(0.02), pytest.approx(0.02)]
    assert [r["holm"] for r in rs] == ["reproduced", "reproduced", "supported"]
    rs[1]["p"] = 0.03
    F.adjust(rs)
    assert rs[1]["holm"] == "inconclusive"
    assert F.scoreboard(rs, "study") == "1 reproduced, 1 inconclusive"


def test_planned_seeds_default_the_run():
    assert runner.planned_seeds("paper") == list(range(10))
    assert runner.planned_seeds("params/quick.yaml") == [0]
    assert runner.planned_seeds("elsewhere/mine.yaml") == [0]
