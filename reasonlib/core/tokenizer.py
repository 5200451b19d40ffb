"""Byte-level tokenizer.

Every UTF-8 string maps to its bytes (ids 0..255), so the round trip
``decode(encode(s)) == s`` is exact for any string, and no vocabulary file is needed.
Three special tokens sit above the bytes:

=======  ===  ==========================================================
token    id   meaning
=======  ===  ==========================================================
PAD      256  padding; never attended to, never in the loss
BOS      257  begin of sequence, first token of every prompt
EOS      258  end of answer; sampling stops when it is produced
=======  ===  ==========================================================

The vocabulary is padded to 264 entries (a multiple of 8) so the output layer has a
friendly shape; ids 259..263 are unused and never produced by training data.
"""
from __future__ import annotations

import numpy as np

PAD = 256
BOS = 257
EOS = 258
N_SPECIAL = 3
VOCAB_SIZE = 264
SPECIAL_NAMES = {PAD: "<pad>", BOS: "<bos>", EOS: "<eos>"}


def encode(text: str, bos: bool = False, eos: bool = False) -> list[int]:
    """UTF-8 bytes of ``text`` as token ids, optionally framed by BOS/EOS."""
    if not isinstance(text, str):
        raise TypeError(f"encode expects str, got {type(text).__name__}")
    ids = list(text.encode("utf-8"))
    if bos:
        ids.insert(0, BOS)
    if eos:
        ids.append(EOS)
    return ids


def decode(ids, specials: bool = False, errors: str = "replace") -> str:
    """Token ids back to text.

    Special tokens are dropped (or shown as ``<pad>``/``<bos>``/``<eos>`` with
    ``specials=True``); ids outside the vocabulary raise ``ValueError``. Byte
    sequences that are not valid UTF-8 (possible in sampled output) decode with
    ``errors`` (default: U+FFFD replacement), so decoding never crashes on model output.
    """
    out = bytearray()
    parts: list[str] = []
    for i in (int(t) for t in ids):
        if 0 <= i < 256:
            out.append(i)
        elif i in SPECIAL_NAMES or 259 <= i < VOCAB_SIZE:
            if specials:
                parts.append(out.decode("utf-8", errors=errors))
                out = bytearray()
                parts.append(SPECIAL_NAMES.get(i, f"<unused{i}>"))
        else:
            raise ValueError(f"token id {i} is outside the vocabulary [0, {VOCAB_SIZE})")
    parts.append(out.decode("utf-8", errors=errors))
    return "".join(parts)


def decode_answer(ids) -> str:
    """Text of a generated answer: bytes up to (not including) the first EOS or PAD."""
    out = bytearray()
    for i in (int(t) for t in ids):
        if i == EOS or i == PAD:
            break
        if 0 <= i < 256:
            out.append(i)
    return out.decode("utf-8", errors="replace")


def decode_batch(arr: np.ndarray) -> list[str]:
    """``decode_answer`` for every row of a 2-D id array."""
    return [decode_answer(row) for row in np.asarray(arr)]
