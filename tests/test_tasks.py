import re
import signal
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasonlib.train import curriculum
from reasonlib.core import tasks
from reasonlib.core.tokenizer import BOS, EOS, PAD, decode


# ---- independent reference definitions (plain Python, per sample) ----------------------
def column_carries(a: int, b: int) -> bool:
    """Schoolbook addition on decimal strings: does any column produce a carry?"""
    sa, sb = str(a)[::-1], str(b)[::-1]
    carry = 0
    for i in range(max(len(sa), len(sb))):
        da = int(sa[i]) if i < len(sa) else 0
        db = int(sb[i]) if i < len(sb) else 0
        carry = (da + db + carry) // 10
        if carry:
            return True
    return False


def ndig(x: int) -> int:
    return len(str(x))


def in_bucket(bucket: str, a: int, b: int, D: int) -> bool:
    one = lambda x: 0 <= x <= 9  # noqa: E731
    two = lambda x: 10 <= x <= 99  # noqa: E731
    if bucket == "d1":
        return one(a) and one(b)
    if bucket == "d2_nocarry":
        return two(a) and two(b) and not column_carries(a, b)
    if bucket == "d2_carry":
        return two(a) and two(b) and column_carries(a, b)
    if bucket == "mixed":
        return (one(a) and two(b)) or (two(a) and one(b))
    if bucket == "low_sum":
        return in_bucket("mixed", a, b, D) and a + b < 30
    if bucket == "mixed3":
        return (ndig(a) == D and ndig(b) < D) or (ndig(b) == D and ndig(a) < D)
    if bucket == "general":
        return 0 <= a < 10 ** D and 0 <= b < 10 ** D
    if bucket == "ood_long":
        return ndig(a) == D + 1 and ndig(b) == D + 1
    raise AssertionError(bucket)


def ref_answer(a: int, b: int, fmt: str) -> str:
    s = str(a + b)
    if fmt == "plain":
        return s
    if fmt == "reversed":
        return s[::-1]
    sa, sb = str(a)[::-1], str(b)[::-1]
    carry, cols = 0, []
    for i in range(max(len(sa), len(sb))):
        t = (int(sa[i]) if i < len(sa) else 0) + (int(sb[i]) if i < len(sb) else 0) + carry
        cols.append(f"{t // 10}{t % 10};")
        carry = t // 10
    return "".join(cols) + ">" + s


@contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging the suite) when the body runs longer than ``seconds``."""
    def handler(signum, frame):
        raise TimeoutError(f"took longer than {seconds}s")
    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


SMALL = ("d1", "d2_nocarry", "d2_carry", "mixed", "low_sum")


# ---- bucket definitions ------------------------------------------------------------------
@pytest.mark.parametrize("bucket", SMALL)
def test_enumerated_equals_brute_force(bucket):
    a, b = tasks.enumerated(bucket)
    got = list(zip(a.tolist(), b.tolist()))
    want = {(x, y) for x in range(100) for y in range(100) if in_bucket(bucket, x, y, 2)}
    assert len(got) == len(set(got)), "enumerated bucket has duplicates"
    assert set(got) == want
    assert tasks.bucket_size(bucket, 3) == len(want)


def test_enumerated_known_sizes():
    sizes = {b: len(tasks.enumerated(b)[0]) for b in SMALL}
    assert sizes == {"d1": 100, "d2_nocarry": 1980, "d2_carry": 6120, "mixed": 1800,
                     "low_sum": 310}
    assert tasks.enumerated("general") is None and tasks.enumerated("ood_long") is None
    assert tasks.bucket_size("general", 3) == 10**6
    assert tasks.bucket_size("ood_long", 2) == 900**2


@pytest.mark.parametrize("D", [1, 2, 3])
@pytest.mark.parametrize("bucket", tasks.BUCKETS)
def test_sample_bucket_satisfies_definition(bucket, D):
    rng = np.random.default_rng([D, tasks.BUCKETS.index(bucket)])
    if tasks.bucket_size(bucket, D) == 0:   # mixed3 at one digit
        with pytest.raises(ValueError, match="no problem"):
            tasks.sample_bucket(bucket, 5, rng, D)
        return
    a, b = tasks.sample_bucket(bucket, 2000, rng, D)
    assert a.shape == b.shape == (2000,)
    bad = [(x, y) for x, y in zip(a.tolist(), b.tolist()) if not in_bucket(bucket, x, y, D)]
    assert not bad, f"{bucket} D={D}: {bad[:5]}"


def test_sampled_buckets_reach_their_extremes():
    rng = np.random.default_rng(0)
    a, b = tasks.sample_bucket("general", 20000, rng, 1)
    assert set(a.tolist()) == set(range(10)) and set(b.tolist()) == set(range(10))
    a, b = tasks.sample_bucket("ood_long", 20000, rng, 1)
    assert set(a.tolist()) == set(range(10, 100))


@pytest.mark.parametrize("D", [1, 2, 3])
def test_eval_set_satisfies_definitions_and_is_distinct(D):
    n = 150
    with time_limit(5):
        ev = tasks.make_eval_set(D, n, seed=5)
    assert ev.buckets == tasks.buckets_for(D) == [b for b in tasks.BUCKETS if b != "mixed3" or D > 1]
    for bucket, (a, b) in ev.problems.items():
        pairs = list(zip(a.tolist(), b.tolist()))
        assert len(pairs) == min(n, tasks.eval_capacity(bucket, D, 5)), bucket
        assert len(set(pairs)) == len(pairs), f"duplicate eval problems in {bucket}"
        bad = [p for p in pairs if not in_bucket(bucket, *p, D)]
        assert not bad, f"{bucket} D={D}: {bad[:5]}"


def test_eval_set_smaller_sampled_bucket_returns_all_of_it():
    # general with max_digits=1 holds only 100 problems: asking for more must give all 100
    # (and terminate), as the docstring promises
    with time_limit(5):
        ev = tasks.make_eval_set(1, 150, seed=0, buckets=("general",))
    a, b = ev.problems["general"]
    assert set(zip(a.tolist(), b.tolist())) == {(x, y) for x in range(10) for y in range(10)}


@pytest.mark.parametrize("D", [1, 2, 3, 4, 6])
def test_any_eval_size_ends_in_seconds_capped_to_the_bucket(D):
    """n_eval = 10^6 used to run for over 10 minutes (coupon-collecting all of general at D=3).
    Every bucket gives at most eval_capacity: all of a small one, a tenth of a large one."""
    with time_limit(10):
        ev = tasks.make_eval_set(D, 10**6, seed=0)
    for b, (a, _) in ev.problems.items():
        cap = tasks.eval_capacity(b, D, 0)
        assert len(a) == min(10**6, cap), b
        size = tasks.bucket_size(b, D)
        if size > tasks.LARGE_BUCKET:      # a tenth of a large bucket
            assert cap == size // 10
        elif ev.held_out(b).any():         # the held-out part of a small one
            assert cap == len(tasks._split(b, D, 0)[0][0]) < size and ev.held_out(b).all()
        else:                              # made of d1 problems only: all of it, seen
            assert cap == size
    assert tasks.capped_sizes(10**6, D, seed=0) == {b: tasks.eval_capacity(b, D, 0)
                                                     for b in tasks.buckets_for(D)
                                                     if tasks.eval_capacity(b, D, 0) < 10**6}


def test_training_draws_stay_cheap_at_the_largest_eval_set():
    """With every reserved problem excluded, rejection still finds training problems fast."""
    excl = tasks.train_exclusions(3, 0)
    assert len(excl) > tasks.MAX_RESERVED
    with time_limit(5):
        a, b = tasks.sample_bucket("general", 50_000, np.random.default_rng(0), 3, excl)
    assert not np.isin(tasks.problem_key(a, b), excl).any()


def test_make_eval_set_refuses_a_bad_count():
    for bad in (0, -5, 2.5, "10"):
        with pytest.raises(ValueError, match="n_per_bucket"):
            tasks.make_eval_set(3, bad, seed=0)


def test_eval_set_deterministic_and_seeded():
    e1 = tasks.make_eval_set(3, 60, seed=11)
    np.random.seed(123)  # global numpy / torch state must not matter
    _ = np.random.rand(10)
    e2 = tasks.make_eval_set(3, 60, seed=11)
    e3 = tasks.make_eval_set(3, 60, seed=12)
    for bucket in tasks.BUCKETS:
        assert np.array_equal(e1.keys(bucket), e2.keys(bucket))
    assert not np.array_equal(e1.keys("general"), e3.keys("general"))
    assert not np.array_equal(e1.keys("d2_carry"), e3.keys("d2_carry"))


def test_eval_set_independent_of_training_seed(sft_config_factory, monkeypatch):
    """train_sft excludes the same eval problems whatever the training seed."""
    from reasonlib.train import sft

    seen = []

    class Stop(Exception):
        pass

    def spy(*args, exclude=None, **kw):
        seen.append(exclude)
        raise Stop

    monkeypatch.setattr(sft, "BatchMaker", spy)
    for seed in (0, 99):
        with pytest.raises(Stop):
            sft.train_sft(sft_config_factory(seed=seed, max_digits=3), progress=False)
    assert len(seen) == 2 and len(seen[0]) > 0
    assert np.array_equal(seen[0], seen[1])
    c = sft_config_factory(max_digits=3)
    want = tasks.train_exclusions(3, c.eval_seed)
    assert np.array_equal(seen[0], want)
    assert np.array_equal(tasks.make_eval_set(3, 7, c.eval_seed).train_exclusions(), want)  # any size
    other = tasks.train_exclusions(3, c.eval_seed + 1)
    assert not np.array_equal(seen[0], other)


def test_eval_bucket_does_not_depend_on_other_buckets_requested():
    full = tasks.make_eval_set(3, 40, seed=3)
    only = tasks.make_eval_set(3, 40, seed=3, buckets=("general",))
    rev = tasks.make_eval_set(3, 40, seed=3, buckets=tuple(reversed(tasks.BUCKETS)))
    assert np.array_equal(only.keys("general"), full.keys("general"))
    for bucket in tasks.BUCKETS:
        assert np.array_equal(rev.keys(bucket), full.keys(bucket)), bucket


def test_eval_subset_is_prefix():
    ev = tasks.make_eval_set(2, 30, seed=1)
    sub = ev.subset(7)
    for bucket in tasks.BUCKETS:
        assert np.array_equal(sub.keys(bucket), ev.keys(bucket)[:7])


def test_train_exclusions_are_the_heldout_share_and_the_reserved_eval_problems():
    ex = tasks.train_exclusions(3, 2)
    assert np.array_equal(ex, np.unique(ex))                   # sorted, unique
    held = tasks.heldout_keys(2)
    assert len(held) == sum(round(0.3 * tasks.bucket_size(s, 3)) for s in tasks.HOLDOUT_STRATA)
    assert tasks.in_sorted(held, ex).all()
    big = tasks.make_eval_set(3, tasks.MAX_RESERVED, seed=2, buckets=("general", "mixed3", "ood_long"))
    for b in big.buckets:   # the largest eval set any parameter may ask for is inside
        keys = big.keys(b)
        a, c = keys // 10**9, keys % 10**9
        assert tasks.in_sorted(keys[(a >= 10) | (c >= 10)], ex).all(), b
    d1 = tasks.problem_key(*tasks.enumerated("d1"))
    assert not tasks.in_sorted(d1, ex).any()                   # d1 is trained in full
    ev2 = tasks.make_eval_set(2, 50, seed=2)   # general has 10^4 problems at 2 digits: small
    assert ev2.held_out("general").all() and not ev2.held_out("d1").any()


# ---- train / eval disjointness ------------------------------------------------------------
def _problems_of_batch(toks: np.ndarray) -> list[tuple[int, int]]:
    out = []
    for row in toks:
        prompt = decode(row).split("=")[0]
        a, b = prompt.split("+")
        out.append((int(a), int(b)))
    return out


def _general_hits(exclude, ev, n_batches=60, batch=256):
    """Eval `general` problems found in training batches of the general stage.

    replay=0 makes every row a `general` draw: with replay, d1/d2 rows (all of those small
    buckets is trained on) may coincide with the ~1% of general eval problems whose operands
    are both below 100, which is by design and not what the exclusions are for."""
    eval_keys = set(ev.keys("general").tolist())
    maker = curriculum.BatchMaker("control", "plain", 3, batch, np.random.default_rng(0),
                                  exclude=exclude, replay=0.0)
    hits = seen = 0
    for _ in range(n_batches):
        toks, _ = maker.next_batch(0.9)
        w = {k: v for k, v in maker.sched[maker.last_stage].weights if v > 0}
        assert w == {"general": 1.0}
        keys = tasks.problem_key(*map(np.array, zip(*_problems_of_batch(toks))))
        seen += len(keys)
        hits += sum(int(k) in eval_keys for k in keys.tolist())
    return hits, seen


def test_batches_never_contain_eval_general_problems():
    ev = tasks.make_eval_set(3, 3000, seed=4)
    hits, seen = _general_hits(ev.train_exclusions(), ev)
    assert seen == 60 * 256
    assert hits == 0
    # the check has teeth: without the exclusions the same draws do hit eval problems
    hits_no_ex, _ = _general_hits(None, ev)
    assert hits_no_ex > 0


def test_default_curriculum_batches_never_meet_an_eval_problem_outside_d1():
    """With replay (the real setting), no eval problem of any bucket appears in training:
    a general eval problem with small operands (say 3+45) is kept out of the mixed stage too."""
    ev = tasks.make_eval_set(3, 3000, seed=4)
    eval_keys = {int(k) for b in ev.buckets if b != "d1" for k in ev.keys(b)[ev.held_out(b)]}
    maker = curriculum.BatchMaker("targeted", "plain", 3, 256, np.random.default_rng(1),
                                  exclude=ev.train_exclusions())
    for i in range(40):
        toks, _ = maker.next_batch(i / 40)
        for a, b in _problems_of_batch(toks):
            assert int(tasks.problem_key(a, b)) not in eval_keys, (a, b)


def test_sample_bucket_rejection_forced():
    allowed = {(3, 4), (7, 7), (0, 9)}
    a, b = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    a, b = a.ravel(), b.ravel()
    keep = np.array([(x, y) not in allowed for x, y in zip(a.tolist(), b.tolist())])
    exclude = tasks.problem_key(a[keep], b[keep])
    assert len(exclude) == 97
    x, y = tasks.sample_bucket("general", 3000, np.random.default_rng(0), 1, exclude=exclude)
    got = set(zip(x.tolist(), y.tolist()))
    assert got == allowed


def test_problem_key_unique():
    a = np.array([0, 1, 123456, 999999, 1])
    b = np.array([1, 0, 999999, 123456, 1])
    assert len(set(tasks.problem_key(a, b).tolist())) == 5


# ---- rendering ----------------------------------------------------------------------------
def _random_problems(D=3, n=40, seed=0):
    rng = np.random.default_rng(seed)
    parts = [tasks.sample_bucket(b, n, rng, D) for b in tasks.BUCKETS]
    a = np.concatenate([p[0] for p in parts])
    b = np.concatenate([p[1] for p in parts])
    # edge cases: zeros, all nines, sums that grow a digit
    a = np.concatenate([a, [0, 0, 9, 999, 5, 9999]])
    b = np.concatenate([b, [0, 7, 1, 999, 5, 1]])
    return a, b


@pytest.mark.parametrize("fmt", tasks.FORMATS)
def test_render_examples_text_and_answer_mask(fmt):
    a, b = _random_problems()
    toks, ans = tasks.render_examples(a, b, fmt)
    assert toks.dtype == np.int64 and ans.dtype == bool and toks.shape == ans.shape
    assert (toks != PAD).sum(1).max() == toks.shape[1], "an all-padding column was kept"
    for row, m, x, y in zip(toks, ans, a.tolist(), b.tolist()):
        answer = ref_answer(x, y, fmt)
        text = re.sub(r"(<pad>)*$", "", decode(row, specials=True))
        assert text == f"<bos>{x}+{y}={answer}<eos>"
        real = row[row != PAD]
        assert (row[len(real):] == PAD).all(), "padding must be on the right"
        assert real[0] == BOS and real[-1] == EOS
        eq = int(np.flatnonzero(row == ord("="))[0])
        want = np.zeros_like(m)
        want[eq + 1: len(real)] = True
        assert np.array_equal(m, want)
        assert decode(row[m]) == answer and row[m][-1] == EOS


@given(st.integers(0, 10**6 - 1), st.integers(0, 10**6 - 1), st.sampled_from(tasks.FORMATS))
def test_answer_text_parses_back(a, b, fmt):
    text = tasks.answer_text(a, b, fmt)
    assert text == ref_answer(a, b, fmt)
    assert tasks.parse_answer(text, fmt) == a + b


def test_render_prompts_left_padded():
    a = np.array([3, 123, 45, 0, 9999])
    b = np.array([4, 6, 678, 0, 1])
    toks, valid = tasks.render_prompts(a, b)
    assert toks.shape == valid.shape
    assert toks.shape[1] == 1 + max(len(f"{x}+{y}=") for x, y in zip(a.tolist(), b.tolist()))
    assert (toks[:, -1] == ord("=")).all()
    for row, v, x, y in zip(toks, valid, a.tolist(), b.tolist()):
        assert np.array_equal(v, row != PAD)
        n_pad = int((~v).sum())
        assert not v[:n_pad].any() and v[n_pad:].all(), "padding must be on the left"
        assert row[n_pad] == BOS
        assert decode(row[v]) == f"{x}+{y}="


@pytest.mark.parametrize("fmt", tasks.FORMATS)
@pytest.mark.parametrize("D", [1, 2, 3, 6])
def test_block_size_enough_for_ood_long(D, fmt):
    big = 10 ** (D + 1) - 1  # longest operands and a carry into a new digit
    a = np.array([big, 10**D, big])
    b = np.array([big, 10**D, 1])
    toks, ans = tasks.render_examples(a, b, fmt)
    assert toks.shape[1] <= tasks.block_size_for(D, fmt)
    assert ans.sum(1).max() <= tasks.max_answer_tokens(D, fmt)
    p, _ = tasks.render_prompts(a, b)
    assert p.shape[1] + tasks.max_answer_tokens(D, fmt) <= tasks.block_size_for(D, fmt)
    # general rows are never longer than ood_long rows
    g = tasks.sample_bucket("general", 200, np.random.default_rng(0), D)
    assert tasks.render_examples(*g, fmt)[0].shape[1] <= tasks.block_size_for(D, fmt)


# ---- parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt,text,want", [
    ("plain", "15", 15), ("plain", "0", 0), ("plain", "015", 15),
    ("plain", "", None), ("plain", "1 5", None), ("plain", "15x", None),
    ("plain", "+15", None), ("plain", "-15", None), ("plain", "\u0663", None),
    ("plain", "15\n", None), ("plain", " 15", None), ("plain", "1" * 31, None),
    ("reversed", "51", 15), ("reversed", "01", 10), ("reversed", "", None),
    ("reversed", "5 1", None), ("reversed", "51;", None), ("reversed", "\u0663", None),
    ("scratchpad", "05;01;>15", 15), ("scratchpad", ">15", 15),
    ("scratchpad", "12;13;>132", 132),
    ("scratchpad", "05;01;15", None), ("scratchpad", "05;>", None),
    ("scratchpad", "", None), ("scratchpad", "5;>15", None), ("scratchpad", "05;01;>1a", None),
    ("scratchpad", "05;01>15", None), ("scratchpad", "15", None),
])
def test_parse_answer_cases(fmt, text, want):
    assert tasks.parse_answer(text, fmt) == want


@given(st.text(), st.sampled_from(tasks.FORMATS))
def test_parse_answer_never_raises(text, fmt):
    v = tasks.parse_answer(text, fmt)
    assert v is None or (isinstance(v, int) and v >= 0)


def test_parse_answer_non_str_is_none():
    assert tasks.parse_answer(None, "plain") is None
    assert tasks.parse_answer(15, "plain") is None


def test_check_format_message():
    with pytest.raises(ValueError) as e:
        tasks.check_format("binary")
    msg = str(e.value)
    assert "'binary'" in msg
    for f in tasks.FORMATS:
        assert f in msg
    for fn in (lambda: tasks.render_examples(np.array([1]), np.array([2]), "binary"),
               lambda: tasks.parse_answer("3", "binary")):
        with pytest.raises(ValueError, match="binary"):
            fn()


def test_check_bucket_message():
    with pytest.raises(ValueError) as e:
        tasks.check_bucket("d3")
    msg = str(e.value)
    assert "'d3'" in msg
    for b in tasks.BUCKETS:
        assert b in msg
    with pytest.raises(ValueError, match="'d3'"):
        tasks.sample_bucket("d3", 1, np.random.default_rng(0), 2)
    with pytest.raises(ValueError, match="'d3'"):
        tasks.make_eval_set(2, 5, 0, buckets=("d1", "d3"))


def test_eval_sets_are_nested_across_sizes():
    small = tasks.make_eval_set(3, 50, 99)
    big = tasks.make_eval_set(3, 5000, 99)
    for b in tasks.BUCKETS:
        n = len(small.problems[b][0])
        assert (big.problems[b][0][:n] == small.problems[b][0]).all(), b
        assert (big.problems[b][1][:n] == small.problems[b][1]).all(), b
