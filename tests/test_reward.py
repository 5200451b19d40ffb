import numpy as np
import pytest

from reasonlib.core import reward, tasks
from reasonlib.core.tokenizer import EOS, PAD, encode

L = 8  # generated-row width used by the hand-made rows below


def row(text: str, end=EOS, width: int = L) -> list[int]:
    """Tokens of ``text`` followed by ``end`` (None: no terminator), PAD-filled to ``width``."""
    ids = encode(text) + ([] if end is None else [end])
    assert len(ids) <= width
    return ids + [PAD] * (width - len(ids))


def score(rows, a, b, fmt="plain"):
    return reward.validate(np.array(rows, dtype=np.int64), np.array(a), np.array(b), fmt)


def test_reward_one_only_for_correct_ended_answers():
    rows = [row("15"),            # correct, ended
            row("16"),            # wrong but parsable
            row("1x"),            # unparsable
            row(""),              # EOS straight away: ended, empty -> unparsable
            row("15", end=None),  # right digits, no terminator: truncated
            row("15", end=PAD),   # right digits, first terminator a sampled PAD
            row("15")[:3] + [ord("9")] * (L - 3),  # EOS then junk: only text up to EOS counts
            ]
    r = score(rows, [12] * 7, [3] * 7)
    assert r.total.dtype == np.float64
    np.testing.assert_array_equal(r.total, [1, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(r.ended, [1, 1, 1, 1, 0, 0, 1])
    np.testing.assert_array_equal(r.parsed, [1, 1, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(r.correct, [1, 0, 0, 0, 0, 0, 1])
    assert r.texts == ["15", "16", "1x", "", "15", "15", "15"]


def test_truncated_row_filling_the_budget_gets_nothing():
    """A row that uses the whole budget with the right digits but never emits EOS."""
    rows = np.array([encode("0015")], dtype=np.int64)  # width 4, no terminator anywhere
    r = reward.validate(rows, np.array([12]), np.array([3]), "plain")
    assert r.texts == ["0015"]
    assert not r.ended[0] and not r.parsed[0] and not r.correct[0] and r.total[0] == 0.0
    # the same digits with an EOS inside the budget are correct
    r = reward.validate(np.array([encode("0015") + [EOS]]), np.array([12]), np.array([3]), "plain")
    assert r.ended[0] and r.correct[0] and r.total[0] == 1.0


def test_pad_before_eos_is_not_ended():
    """The first terminator decides: PAD then EOS means the row stopped on a sampled PAD."""
    rows = [encode("15") + [PAD, EOS] + [PAD] * (L - 4),
            encode("15") + [EOS, PAD] + [PAD] * (L - 4)]
    r = score(rows, [12, 12], [3, 3])
    np.testing.assert_array_equal(r.ended, [False, True])
    np.testing.assert_array_equal(r.total, [0.0, 1.0])


def test_parts_are_reported_separately():
    # parsed but wrong: ended & parsed, not correct; ended but unparsable: only ended
    r = score([row("99"), row("+"), row("7", end=None)], [1, 1, 3], [2, 2, 4])
    assert (r.ended.tolist(), r.parsed.tolist(), r.correct.tolist()) == (
        [True, True, False], [True, False, False], [False, False, False])
    for part in (r.ended, r.parsed, r.correct):
        assert part.dtype == bool and part.shape == (3,)
    # the reward never exceeds any of its parts
    assert np.all(r.total <= r.correct) and np.all(r.correct <= r.parsed) \
        and np.all(r.parsed <= r.ended)


@pytest.mark.parametrize("fmt, hit, misses", [
    ("plain", "132", ["131", "231", "0132x"]),
    ("reversed", "231", ["132", "331", "23;1"]),              # "132" read back is 231
    ("scratchpad", "12;13;>132", ["12;13;>133", "12;13;132", "132"]),
])
def test_formats_hit_and_miss(fmt, hit, misses):
    assert tasks.answer_text(47, 85, fmt) == hit  # the hit is the training target
    texts = [hit] + misses
    r = score([row(t, width=16) for t in texts], [47] * len(texts), [85] * len(texts), fmt)
    assert r.total.tolist() == [1.0] + [0.0] * len(misses)
    assert r.ended.all()
    # first miss is well-formed but wrong, the others do not parse (except reversed "331")
    assert r.parsed[1] and not r.correct[1]
    assert r.texts == texts


def test_reward_agrees_with_parser_and_truth_on_random_rows():
    """Random rows of digits, EOS and PAD: reward == (first terminator is EOS) and
    parse_answer(text) == a + b, checked row by row against a direct loop."""
    rng = np.random.default_rng(0)
    R = 400
    alphabet = np.array([ord(c) for c in "0123456789"] + [EOS, PAD, ord("x")])
    p = np.r_[np.full(10, 0.07), 0.15, 0.1, 0.05]
    tokens = rng.choice(alphabet, size=(R, 4), p=p / p.sum())
    a = rng.integers(0, 10, R)
    b = rng.integers(0, 10, R)
    # make a good share correct
    for i in range(0, R, 3):
        s = encode(str(a[i] + b[i])) + [EOS]
        tokens[i, :len(s)] = s
    r = reward.validate(tokens, a, b, "plain")
    for i in range(R):
        ids = tokens[i].tolist()
        term = [t for t in ids if t in (EOS, PAD)]
        ended = bool(term) and term[0] == EOS
        k = next((j for j, t in enumerate(ids) if t in (EOS, PAD)), len(ids))
        text = bytes(ids[:k]).decode()
        v = tasks.parse_answer(text, "plain") if ended else None
        assert r.ended[i] == ended
        assert r.texts[i] == text
        assert r.parsed[i] == (v is not None)
        assert r.total[i] == float(v == a[i] + b[i])
    assert 0.2 < r.total.mean() < 0.5 and (~r.ended).sum() > 50
