import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasonlib.core import tokenizer as tk


@given(st.text())
def test_round_trip_any_text(s):
    assert tk.decode(tk.encode(s)) == s


@given(st.text())
def test_encode_is_utf8_bytes_and_framing(s):
    ids = tk.encode(s, bos=True, eos=True)
    assert ids[0] == tk.BOS and ids[-1] == tk.EOS
    assert bytes(ids[1:-1]) == s.encode("utf-8")
    # specials are dropped by default
    assert tk.decode(ids) == s


def test_special_ids_and_vocab():
    assert (tk.PAD, tk.BOS, tk.EOS) == (256, 257, 258)
    assert len({tk.PAD, tk.BOS, tk.EOS}) == tk.N_SPECIAL
    assert tk.VOCAB_SIZE == 264 and tk.VOCAB_SIZE % 8 == 0
    assert tk.VOCAB_SIZE >= 256 + tk.N_SPECIAL


def test_encode_rejects_non_str():
    with pytest.raises(TypeError, match="bytes"):
        tk.encode(b"12")


def test_decode_specials_shown_by_name():
    ids = [tk.BOS] + tk.encode("1+2=") + [ord("3"), tk.EOS, tk.PAD, tk.PAD]
    assert tk.decode(ids) == "1+2=3"
    assert tk.decode(ids, specials=True) == "<bos>1+2=3<eos><pad><pad>"
    assert tk.decode([259], specials=True) == "<unused259>"
    assert tk.decode([259]) == ""


def test_decode_specials_do_not_split_multibyte_char():
    # specials between bytes flush the byte buffer; a complete char before them survives
    ids = tk.encode("é") + [tk.EOS] + tk.encode("ü")
    assert tk.decode(ids, specials=True) == "é<eos>ü"


def test_decode_answer_stops_at_eos_and_pad():
    assert tk.decode_answer(tk.encode("123") + [tk.EOS] + tk.encode("45")) == "123"
    assert tk.decode_answer(tk.encode("12") + [tk.PAD] + tk.encode("9")) == "12"
    assert tk.decode_answer([tk.EOS] + tk.encode("7")) == ""
    assert tk.decode_answer(tk.encode("77")) == "77"
    arr = np.array([tk.encode("1") + [tk.EOS, tk.PAD], tk.encode("234")])
    assert tk.decode_batch(arr) == ["1", "234"]


@pytest.mark.parametrize("bad", [264, 300, -1, 10**6])
def test_decode_out_of_range_raises_naming_id(bad):
    with pytest.raises(ValueError, match=rf"token id {bad} "):
        tk.decode([65, bad, 66])
    with pytest.raises(ValueError, match=rf"token id {bad} "):
        tk.decode([bad], specials=True)


@given(st.lists(st.integers(0, tk.VOCAB_SIZE - 1), max_size=64), st.booleans())
def test_decode_never_crashes_on_vocab_ids(ids, specials):
    out = tk.decode(ids, specials=specials)
    assert isinstance(out, str)
    assert isinstance(tk.decode_answer(ids), str)
    if not specials:
        # dropping specials: exactly the bytes, replacement-decoded
        assert out == bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


@given(st.lists(st.integers(0, 255), max_size=64))
def test_decode_invalid_utf8_uses_replacement(ids):
    assert tk.decode(ids) == bytes(ids).decode("utf-8", errors="replace")
