"""Property-based tests of the parameter rules (issue: every parameter set that cannot work
is refused before compute).

Parameter sets are drawn from the schema's own ranges, edges included, and combined. Each
one is either refused by ``params.validate`` with a ParamError that names a parameter, or it
works: the model of notebook 01 is built and run on the longest row its block must hold,
the KV-cache sampler decodes from it, and the first SFT steps train. Any other exception is
a crash the rules let through; each one found became a named regression test below.
"""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reasonlib.core import sampling, tasks
from reasonlib.core.schemes import POS_SCHEMES
from reasonlib.train import params, sft
from reasonlib.train.params import SCHEMA, ParamError

# values at and around the edges of every range in the schema, and a few in between
EDGE_INTS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128,
             129, 1000, 1024, 4096, 4097, 65536, 65537, 10**6, 10**6 + 1, 10**11, 10**11 + 1]
EDGE_FLOATS = [0.0, 1e-12, 1e-3, 0.05, 0.1, 0.5, 0.99, 1.0, 1.5, 100.0, 1e300]


def _allowed(key):
    """A strategy of values ``key`` accepts on its own (the single-parameter checks): its
    edges, and values between them."""
    s = SCHEMA[key]
    if s.kind == "int":
        ok = [v for v in EDGE_INTS if s.check(v)]
        return st.one_of(st.sampled_from(ok), st.integers(min(ok), max(ok)))
    if s.kind == "float":
        ok = [v for v in EDGE_FLOATS if s.check(v)]
        return st.one_of(st.sampled_from(ok), st.floats(min(ok), max(ok), allow_nan=False)
                         .filter(s.check))
    if s.kind == "bool":
        return st.booleans()
    if s.kind == "choice":
        return st.sampled_from(s.choices)
    if s.kind == "list_choice":
        return st.lists(st.sampled_from(s.choices), min_size=1, max_size=len(s.choices), unique=True)
    if s.kind == "list_int":
        return st.lists(st.sampled_from([1, 2, 4, 8, 16, 32, 1024]).filter(s.check), min_size=1,
                        max_size=5, unique=True)
    if s.kind == "list_float":
        return st.lists(st.sampled_from([0.0, 0.02, 0.05, 0.1, 0.5, 2.0]), min_size=1, max_size=5,
                        unique=True)
    return st.just(s.default)   # paths and names


PATHS = ("run_dir", "artifacts_dir", "run_root")
ANY_SET = st.fixed_dictionaries({}, optional={k: _allowed(k) for k in SCHEMA if k not in PATHS})


def _names_a_parameter(msg: str) -> bool:
    return any(re.search(rf"\b{re.escape(k)}\b", msg) for k in SCHEMA)


@settings(max_examples=500)
@given(ANY_SET)
def test_every_set_is_accepted_or_refused_naming_a_parameter(values):
    """Validation alone, over the whole schema: it never crashes, and a refusal names a
    parameter (and a value that would work, for the rules tying several together)."""
    try:
        params.validate(values)
    except ParamError as e:
        assert _names_a_parameter(str(e)), str(e)


# small shapes and budgets, so that an accepted set runs in well under a second; the budget
# is drawn as a number of steps of the longest training row (0 to 24), give or take a token
@st.composite
def small_sets(draw):
    v = draw(st.fixed_dictionaries({
        "n_layer": st.sampled_from([1, 2, 3]),
        "n_head": st.sampled_from([1, 1, 2, 2, 4, 4, 3, 8, 64]),     # repeats: drawn more often
        "n_embd": st.sampled_from([2, 4, 8, 8, 16, 16, 24, 1, 3, 6, 64]),
        "pos": st.sampled_from(POS_SCHEMES),
        "positions": st.lists(st.sampled_from(POS_SCHEMES), min_size=1, max_size=2, unique=True),
        "fmt": st.sampled_from(tasks.FORMATS),
        "formats": st.lists(st.sampled_from(tasks.FORMATS), min_size=1, max_size=2, unique=True),
        "max_digits": st.integers(1, 6),
        "pos_offset": st.sampled_from([0, 1, 8, 16]),
        "batch_size": st.sampled_from([1, 2, 3, 8, 32]),
        "eval_every": st.sampled_from([1, 2, 5]),
        "warmup_frac": st.sampled_from([0.0, 0.0, 0.05, 0.5, 0.99]),
        "eval_n": st.sampled_from([1, 3]),
        "packed": st.booleans(),
        "curricula": st.sampled_from([["control"], ["targeted"]]),
        "buckets": st.sampled_from([["general"], ["d1", "mixed3", "ood_long"], list(tasks.BUCKETS)]),
        "rl_buckets": st.sampled_from([["general"], ["mixed3", "low_sum"]]),
    }))
    row = max(tasks.max_row_tokens(v["max_digits"], f) for f in [v["fmt"], *v["formats"]])
    steps = draw(st.sampled_from([0, 1, 6, 12, 12, 24, 24]))
    v["total_tokens"] = max(1, steps * v["batch_size"] * row + draw(st.sampled_from([-1, 0, 1])))
    return v


def _runs(P) -> None:
    """What an accepted set must be able to do: notebook 01's model on the longest row its
    block holds (operands of tasks.longest_tested digits), the KV-cache sampler, and
    the first SFT steps of every arm's position scheme."""
    for pos in dict.fromkeys([P.pos, *P.positions]):
        cfg = replace(sft.config_from_params(P, P.curricula[0]), pos=pos,
                      pos_offset=P.pos_offset, snapshots=False)
        torch.manual_seed(0)
        w = tasks.longest_tested(P.max_digits)
        a = np.array([10 ** w - 1, 7])
        b = np.array([10 ** w - 1, 10 ** (w - 1)])
        prompts, valid = tasks.render_prompts(a, b)
        res = sft.train_sft(cfg, progress=False, stop_after_step=2)
        model = res.model
        with torch.no_grad():
            toks = torch.as_tensor(prompts)
            assert model(toks, valid=torch.as_tensor(valid)).shape[:2] == toks.shape
        g = sampling.generate(model, prompts, valid, tasks.answer_len(w, cfg.fmt),
                              temperature=1.0, n_samples=2, seed=0)
        assert g.tokens.shape[0] == 4
        assert len(res.history["loss"]) >= 1 and np.isfinite(res.history["loss"]).all()


@settings(max_examples=60)
@given(small_sets())
@example({"n_layer": 1, "n_head": 64, "n_embd": 64, "pos": "rope", "positions": ["rope"],
          "fmt": "reversed", "formats": ["reversed"], "max_digits": 3, "pos_offset": 0,
          "total_tokens": 20_000, "batch_size": 8, "eval_every": 1, "warmup_frac": 0.05,
          "eval_n": 1, "packed": False, "curricula": ["targeted"], "buckets": ["general"],
          "rl_buckets": ["general"]})
def test_small_sets_are_refused_or_train_and_decode(values):
    try:
        P = params.validate(values)
    except ParamError as e:
        assert _names_a_parameter(str(e)), str(e)
        return
    _runs(P)


# ---- the cases of the issue, and what the property tests found -------------------------------
def _refused(values, *needles):
    with pytest.raises(ParamError) as e:
        params.validate(values)
    for n in needles:
        assert n in str(e.value), (n, str(e.value))
    return str(e.value)


def test_budget_below_one_batch_is_refused():
    msg = _refused({"total_tokens": 1}, "total_tokens = 1", "batch_size = 128", "one batch",
                   "would work")
    works = int(re.search(r"total_tokens = ([\d,]+) would work", msg).group(1).replace(",", ""))
    params.validate({"total_tokens": works})   # the value it suggests is accepted


def test_head_size_one_with_rotary_positions_is_refused():
    _refused({"n_head": 64, "n_embd": 64}, "n_head = 64", "n_embd = 64", "must be even",
             "n_head = 32 would work")
    params.validate({"n_head": 64, "n_embd": 64, "pos": "nope", "positions": ["nope", "abacus"]})


def test_odd_head_size_is_refused_for_any_rotary_arm_of_08():
    _refused({"n_head": 4, "n_embd": 12, "pos": "nope", "positions": ["nope", "local"]},
             "local", "must be even")


def test_no_probe_before_the_end_is_refused():
    _refused({"eval_every": 200}, "eval_every = 200", "probe", "would work")


def test_a_model_too_large_to_train_is_refused():
    _refused({"n_layer": 64, "n_embd": 4096, "n_head": 64}, "n_layer = 64", "n_embd = 4096",
             "would work")


def test_a_vanishing_warmup_fraction_is_not_an_overflow():
    """Found by the property test: warmup_frac = 5e-324 (a subnormal float) made an earlier
    budget rule (a warmup of at least one step) divide by it and raise OverflowError. That
    rule is gone (a warmup shorter than one step still trains); the value is accepted, and
    a budget refused beside it gets a finite suggestion."""
    params.validate({"warmup_frac": 5e-324})
    msg = _refused({"warmup_frac": 5e-324, "total_tokens": 1}, "one batch", "would work")
    assert "inf" not in msg


def test_suggested_values_are_accepted():
    """Every suggestion, applied, passes."""
    cases = [{"total_tokens": 1}, {"n_head": 64, "n_embd": 64}, {"n_head": 3, "n_embd": 64},
             {"eval_every": 200}, {"n_embd": 63, "n_head": 3}, {"ks": [1, 32]},
             {"replay": 0.6, "mixed_replay": 0.4}]
    for values in cases:
        msg = _refused(values)
        key, val = re.search(r";.*?(\w+) = ([\d,.]+) would work", msg).groups()
        v = float(val.replace(",", "")) if "." in val else int(val.replace(",", ""))
        params.validate({**values, key: v})
