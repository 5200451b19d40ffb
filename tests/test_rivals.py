"""RL's rivals at equal compute (reasonlib.train.rivals): the budget is RL's unit and is
spent, each arm has its own warmup and anneal, RFT learns only from accepted samples of its
own, and a finished arm is cached."""
import numpy as np
import pytest
import torch

from conftest import tiny_sft_config
from reasonlib.core import tasks
from reasonlib.train import rivals, rl, sft


@pytest.fixture(scope="module")
def start():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = tiny_sft_config(total_tokens=8000)   # right now and then: RFT has samples to keep
        return sft.train_sft(cfg, progress=False).model, cfg
    finally:
        torch.set_num_threads(n)


def rival(kind, **kw) -> rivals.RivalConfig:
    base = dict(init="tiny", kind=kind, budget=2000, lr=3e-3, seed=0, buckets=("d1",),
                batch_size=16, prompts_per_step=8, group_size=4, eval_every=3, eval_n=3)
    base.update(kw)
    return rivals.RivalConfig(**base)


@pytest.mark.parametrize("kind", rivals.KINDS)
def test_the_budget_is_spent_in_rl_units_and_the_schedule_is_its_own(start, kind):
    model, cfg = start
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = rivals.train_rival(rival(kind), model, cfg, progress=False)
    h = r.history
    spent = np.array(h["spent"])
    assert spent[-1] >= 2000 > spent[-2], "stops at the first step that reaches the budget"
    assert spent[-1] == pytest.approx(sum(h["trained_tokens"]) + sum(h["sampled_tokens"]) / 3)
    if kind == "sft":
        assert sum(h["sampled_tokens"]) == 0 and min(h["trained_tokens"]) > 0
    else:
        assert sum(h["sampled_tokens"]) > 0 and max(h["accepted"]) > 0
        assert all(t == 0 for t, s in zip(h["trained_tokens"], h["accepted"]) if s == 0), \
            "a step with nothing accepted trains on nothing"
    lr = np.array(h["lr"])
    assert lr.max() <= 3e-3 and lr[-1] < 0.5 * lr.max(), "warmed up, then annealed"
    assert np.argmax(lr) > 0 or len(lr) < 3
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "start untouched"
    assert any(not torch.equal(before[k], v) for k, v in r.model.state_dict().items())
    assert h["val"][-1]["step"] == h["step"][-1]


def test_rft_keeps_only_correct_samples_of_its_own(start):
    model, cfg = start
    a, b = rl.draw_prompts(("d1",), 64, np.random.default_rng(0), 2,
                           tasks.train_exclusions(2, cfg.eval_seed))
    kept, sampled, share = rivals.accepted(model, a, b, 4, cfg.fmt,
                                           tasks.max_answer_tokens(2, cfg.fmt), seed=1)
    assert sampled > 0 and 0 <= share <= 1
    if kept is None:
        pytest.skip("the tiny start got nothing right")
    seq, gm = kept
    assert len(seq) == round(share * 256)
    from reasonlib.core.tokenizer import decode
    for row, m in zip(seq.numpy(), gm.numpy()):
        text = decode(row[m.astype(bool)])
        prompt = decode(row[~m.astype(bool)])
        x, y = prompt.split("=")[0].split("+")
        assert tasks.parse_answer(text, cfg.fmt) == int(x) + int(y)


def test_rival_is_cached_and_bad_configs_are_refused(tmp_path, start):
    model, cfg = start
    c = rival("sft", budget=500)
    r1 = rivals.get_or_train(c, model, cfg, tmp_path, progress=False)
    r2 = rivals.get_or_train(c, model, cfg, tmp_path, progress=False)
    assert r1.trained_now and not r2.trained_now
    assert all(torch.equal(v, r2.model.state_dict()[k]) for k, v in r1.model.state_dict().items())
    with pytest.raises(ValueError, match="kind='dpo'.*sft, rft"):
        rivals.RivalConfig(init="t", kind="dpo", budget=10, lr=1e-3)
    for bad, match in ((dict(budget=0), "budget=0"),
                       (dict(lr=0.0), "lr=0.0"), (dict(buckets=()), "empty"),
                       (dict(buckets=("d9",)), "d9")):
        with pytest.raises(ValueError, match=match):
            rival("sft", **bad)
