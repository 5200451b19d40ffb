import numpy as np
import pytest

from reasonlib.train import curriculum, sft
from reasonlib.core.tokenizer import decode


@pytest.mark.parametrize("name", curriculum.CURRICULA)
@pytest.mark.parametrize("replay,mixed_replay", [(0.2, 0.15), (0.0, 0.0), (0.5, 0.3)])
def test_stage_weights_sum_to_one_and_cover_unit_interval(name, replay, mixed_replay):
    sched = curriculum.stages(name, replay, mixed_replay)
    assert sched[0].start == 0.0 and sched[-1].end == 1.0
    for prev, nxt in zip(sched, sched[1:]):
        assert prev.end == nxt.start
    for st in sched:
        assert st.start < st.end
        w = dict(st.weights)
        assert len(w) == len(st.weights), "a bucket appears twice in one stage"
        assert sum(w.values()) == pytest.approx(1.0, abs=1e-12)
        assert all(v >= 0 for v in w.values())
        assert set(w) <= {"d1", "d2_nocarry", "d2_carry", "mixed", "pairs", "general"}  # never ood_long
        assert st.name in w


def test_stage_names_and_order():
    assert [s.name for s in curriculum.stages("control")] == \
        ["d1", "d2_nocarry", "d2_carry", "general"]
    names = [s.name for s in curriculum.stages("targeted")]
    assert names == ["d1", "d2_nocarry", "d2_carry", "mixed", "general"]
    assert names.index("mixed") < names.index("general")
    assert [s.name for s in curriculum.stages("targeted_v2")] == \
        ["d1", "d2_nocarry", "d2_carry", "mixed", "pairs", "general"]


def test_v2_keeps_pairs_share_and_every_curriculum_spends_the_whole_budget():
    last = dict(curriculum.stages("targeted_v2", replay=0.2, mixed_replay=0.15)[-1].weights)
    assert last["pairs"] == pytest.approx(0.15) and last["mixed"] == pytest.approx(0.05)
    for name in curriculum.CURRICULA:   # equal token budgets: the stages tile [0, 1]
        sched = curriculum.stages(name)
        assert sched[0].start == 0 and sched[-1].end == 1


def test_replay_shares():
    sched = curriculum.stages("control", replay=0.2)
    assert dict(sched[0].weights) == {"d1": 1.0}
    w = dict(sched[-1].weights)
    assert w["general"] == pytest.approx(0.8)
    for b in ("d1", "d2_nocarry", "d2_carry"):
        assert w[b] == pytest.approx(0.2 / 3)


@pytest.mark.parametrize("mixed_replay", [0.15, 0.3])
def test_targeted_keeps_mixed_share_in_general_stage(mixed_replay):
    sched = curriculum.stages("targeted", replay=0.2, mixed_replay=mixed_replay)
    gen = dict(sched[-1].weights)
    assert gen["mixed"] == mixed_replay
    assert gen["general"] == pytest.approx(1 - 0.2 - mixed_replay)
    for b in ("d1", "d2_nocarry", "d2_carry"):
        assert gen[b] == pytest.approx(0.2 / 3)
    # before mixed is introduced it is not drawn at all
    for st in sched[:3]:
        assert "mixed" not in dict(st.weights)
    # control never draws mixed
    for st in curriculum.stages("control"):
        assert "mixed" not in dict(st.weights)


def test_unknown_curriculum_lists_allowed():
    for fn in (lambda: curriculum.stages("random"),
               lambda: curriculum.BatchMaker("random", "plain", 2, 4, np.random.default_rng(0)),
               lambda: sft.SFTConfig(curriculum="random")):
        with pytest.raises(ValueError) as e:
            fn()
        msg = str(e.value)
        assert "'random'" in msg
        for c in curriculum.CURRICULA:
            assert c in msg


@pytest.mark.parametrize("replay,mixed_replay", [(1.0, 0.0), (-0.1, 0.0), (0.5, 0.5), (0.2, 1.2)])
def test_bad_replay_raises(replay, mixed_replay):
    with pytest.raises(ValueError, match="replay"):
        curriculum.stages("targeted", replay, mixed_replay)


def test_stage_at():
    sched = curriculum.stages("control")
    b = sched[0].end  # the first stage's share of the budget
    assert 0 < b < 1
    assert curriculum.stage_at(sched, 0.0).name == "d1"
    assert curriculum.stage_at(sched, b - 1e-4).name == "d1"
    assert curriculum.stage_at(sched, b).name == "d2_nocarry"
    assert curriculum.stage_at(sched, 0.9999).name == "general"
    assert curriculum.stage_at(sched, 1.0).name == "general"
    assert curriculum.stage_at(sched, 1.5).name == "general"


def _batches(seed, fracs, curr="targeted"):
    bm = curriculum.BatchMaker(curr, "scratchpad", 3, 32, np.random.default_rng(seed))
    return [bm.next_batch(f) for f in fracs]


def test_batchmaker_deterministic():
    fracs = [0.0, 0.2, 0.5, 0.7, 0.95]
    a, b, c = _batches(5, fracs), _batches(5, fracs), _batches(6, fracs)
    for (ta, ma), (tb, mb) in zip(a, b):
        assert np.array_equal(ta, tb) and np.array_equal(ma, mb)
    assert any(ta.shape != tc.shape or not np.array_equal(ta, tc)
               for (ta, _), (tc, _) in zip(a, c))


def test_batchmaker_rows_come_from_stage_buckets():
    bm = curriculum.BatchMaker("targeted", "plain", 3, 64, np.random.default_rng(0))
    toks, ans = bm.next_batch(0.0)  # stage d1 only
    assert bm.last_stage == 0 and toks.shape[0] == 64
    for row in toks:
        a, b = map(int, decode(row).split("=")[0].split("+"))
        assert a < 10 and b < 10
    mixed = next(s for s in bm.sched if s.name == "mixed")
    toks, _ = bm.next_batch((mixed.start + mixed.end) / 2)  # stage 'mixed' of targeted
    assert bm.sched[bm.last_stage].name == "mixed"
    n_mixed = 0
    for row in toks:
        a, b = map(int, decode(row).split("=")[0].split("+"))
        assert max(a, b) < 100
        n_mixed += (a < 10) != (b < 10)
    assert n_mixed > 32  # 60% of rows in expectation are mixed


@pytest.mark.parametrize("name", curriculum.CURRICULA)
def test_equal_token_budgets(name, sft_config_factory):
    cfg = sft_config_factory(curriculum=name, total_tokens=2500, batch_size=16)
    res = sft.train_sft(cfg, progress=False)
    toks = res.history["tokens"]
    one_batch = cfg.batch_size * cfg.model_config().block_size
    assert cfg.total_tokens <= toks[-1] < cfg.total_tokens + one_batch
    assert toks[-2] < cfg.total_tokens  # it stopped at the first step past the budget
    assert all(b > a for a, b in zip(toks, toks[1:]))
    # the stages the batches came from follow the schedule of the curriculum
    sched = curriculum.stages(name)
    fracs = [0] + [t / cfg.total_tokens for t in toks[:-1]]
    assert res.history["stage"] == [sched.index(curriculum.stage_at(sched, f)) for f in fracs]
    assert set(res.history["stage"]) == set(range(len(sched)))
