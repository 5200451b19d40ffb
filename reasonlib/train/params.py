"""Notebook / CLI parameters: one flat schema, YAML profiles, validation before compute.

Every notebook's ``parameters`` cell holds flat literals whose defaults are the ``smoke``
sizes (``params/smoke.yaml`` equals :data:`DEFAULTS`, a test checks it). The next cell calls
:func:`collect` on the notebook's globals: every parameter papermill injected is checked
(type, range, allowed values), unknown names are refused, and derived configs are built
from the result. Errors name the key, the value and what is allowed.
"""
from __future__ import annotations

import math
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from .curriculum import CURRICULA
from ..core.schemes import MAX_PLACE, POS_SCHEMES
from ..core.tasks import BUCKETS, FORMATS, MAX_RESERVED, bucket_size, capped_sizes

DEVICES = ("auto", "cpu", "cuda", "mps")


class ParamError(ValueError):
    """A parameter value that is not allowed; the message names key, value and rule."""


@dataclass(frozen=True)
class Spec:
    default: Any
    kind: str  # int, float, bool, str, choice, list_choice, list_int, list_float
    rule: str          # human-readable allowed values
    check: Callable[[Any], bool] = lambda v: True
    choices: tuple = ()


def _pos(v):
    return v > 0


def _nonneg(v):
    return v >= 0


def _unit(v):
    return 0 <= v < 1


def _upto(hi, lo=1):
    """An integer range check: the upper bounds keep every allowed value's cost proportional to
    the work it asks for, within what one machine can hold (a larger value is refused)."""
    return lambda v: lo <= v <= hi


RL_MIXES = ("uniform", "adaptive")  # RL prompt mixes (reasonlib.train.rl.mix_weights)
MAX_EVAL = MAX_RESERVED  # problems per bucket for evaluation, pass@k and the failure analysis:
                         # every eval set fits in the problems training never draws
MAX_SAMPLES = 1_024     # samples per problem (and per RL prompt)


SCHEMA: dict[str, Spec] = {
    "seed": Spec(0, "int", "an integer >= 0", _nonneg),
    "run_dir": Spec("runs/notebooks/seed-0", "str", "a non-empty path (relative to the repo root)"),
    "artifacts_dir": Spec("runs/notebooks/artifacts", "str", "a non-empty path (relative to the repo root)"),
    # cross-seed summary (09): the folder holding the seed-* run folders of one profile
    "run_root": Spec("runs/notebooks", "str", "a non-empty path (relative to the repo root)"),
    "device": Spec("cpu", "choice", "one of " + ", ".join(DEVICES), choices=DEVICES),
    "fmt": Spec("reversed", "choice", "one of " + ", ".join(FORMATS), choices=FORMATS),
    # the answer-format comparison (03): the targeted curriculum in each of these formats
    "formats": Spec(list(FORMATS), "list_choice",
                    "a non-empty list of distinct names from " + ", ".join(FORMATS),
                    choices=FORMATS),
    "max_digits": Spec(3, "int", "an integer in 1..6", lambda v: 1 <= v <= 6),
    "curricula": Spec(["control", "targeted"], "list_choice",
                      "a non-empty list of distinct names from " + ", ".join(CURRICULA),
                      choices=CURRICULA),
    "buckets": Spec(list(BUCKETS), "list_choice",
                    "a non-empty list of distinct names from " + ", ".join(BUCKETS),
                    choices=BUCKETS),
    "n_layer": Spec(2, "int", "an integer in 1..64", _upto(64)),
    "n_head": Spec(4, "int", "an integer in 1..64 that divides n_embd", _upto(64)),
    "n_embd": Spec(64, "int", "an integer in 1..4096", _upto(4096)),
    "pos": Spec("rope", "choice", "one of " + ", ".join(POS_SCHEMES) + " (position scheme)",
                choices=POS_SCHEMES),
    # the length study (08): one targeted model per scheme, n_len problems per operand length
    "positions": Spec(list(POS_SCHEMES), "list_choice",
                      "a non-empty list of distinct names from " + ", ".join(POS_SCHEMES),
                      choices=POS_SCHEMES),
    "n_len": Spec(100, "int", f"an integer in 1..{MAX_EVAL:,} (problems per operand length)",
                  _upto(MAX_EVAL)),
    # abacus, coupled, local: each training row's places are shifted by one random offset in
    # 0..pos_offset, so the places of numbers longer than the trained ones are trained too
    # (ignored by the other schemes); the bound keeps abacus's table large enough
    "pos_offset": Spec(0, "int", f"an integer in 0..{MAX_PLACE - 16} (largest random place "
                                 "offset in training; abacus, coupled and local only)",
                       _upto(MAX_PLACE - 16, lo=0)),
    "total_tokens": Spec(150_000, "int",
                         "an integer in 1..10^11 (training tokens per curriculum)", _upto(10**11)),
    "batch_size": Spec(128, "int", "an integer in 1..65536", _upto(65536)),
    "lr": Spec(0.002, "float", "a number > 0", _pos),
    "min_lr_frac": Spec(0.1, "float", "a number in [0, 1]", lambda v: 0 <= v <= 1),
    "warmup_frac": Spec(0.05, "float", "a number in [0, 1)", _unit),
    "weight_decay": Spec(0.1, "float", "a number >= 0", _nonneg),
    "grad_clip": Spec(1.0, "float", "a number > 0", _pos),
    # the packed, padding-free SFT step (sft.answer_loss(packed=True)): the same loss with other
    # float roundings and faster; the quick profile uses it, the paper profile not until its
    # calibrated numbers have been measured with it (docs/performance.md, "The packed step")
    "packed": Spec(False, "bool", "true or false"),
    "replay": Spec(0.2, "float", "a number in [0, 1)", _unit),
    "mixed_replay": Spec(0.15, "float", "a number in [0, 1)", _unit),
    "eval_every": Spec(50, "int", "an integer > 0 (steps between probes)", _pos),
    "eval_n": Spec(30, "int", f"an integer in 1..{MAX_EVAL:,} (probe problems per bucket during "
                              f"training)", _upto(MAX_EVAL)),
    "n_eval": Spec(100, "int", f"an integer in 1..{MAX_EVAL:,} (eval problems per bucket)",
                   _upto(MAX_EVAL)),
    "eval_seed": Spec(1234, "int", "an integer >= 0", _nonneg),
    "n_samples": Spec(16, "int", f"an integer in 1..{MAX_SAMPLES} (samples per problem)",
                      _upto(MAX_SAMPLES)),
    "ks": Spec([1, 2, 4, 8, 16], "list_int", "a non-empty list of distinct integers > 0", _pos),
    "temperature": Spec(1.0, "float", "a number in [0.001, 100]", lambda v: 1e-3 <= v <= 100),
    "top_k": Spec(0, "int", "an integer >= 0 (0 = no top-k)", _nonneg),
    "n_passk": Spec(50, "int", f"an integer in 1..{MAX_EVAL:,} (problems per bucket for pass@k)",
                    _upto(MAX_EVAL)),
    # RL (05, 06)
    "rl_steps": Spec(12, "int", "an integer in 1..1000000 (policy updates)", _upto(10**6)),
    "rl_prompts": Spec(16, "int", "an integer in 1..65536 (prompts per update)", _upto(65536)),
    "rl_group": Spec(4, "int", f"an integer in 2..{MAX_SAMPLES} (samples per prompt)",
                     _upto(MAX_SAMPLES, lo=2)),
    "rl_lr": Spec(0.0003, "float", "a number > 0", _pos),
    "beta": Spec(0.05, "float", "a number >= 0 (KL weight)", _nonneg),
    "betas": Spec([0.0, 0.02, 0.05, 0.1, 0.5], "list_float",
                  "a non-empty list of distinct numbers >= 0", _nonneg),
    "rl_std_normalize": Spec(False, "bool", "true or false"),
    "rl_buckets": Spec(["general", "mixed", "low_sum"], "list_choice",
                       "a non-empty list of distinct names from " + ", ".join(BUCKETS),
                       choices=BUCKETS),
    # dynamic sampling: keep only groups whose rewards differ, drawing up to rl_max_draws x
    # rl_prompts prompts per update; rl_mix adaptive: the bucket mix follows where the policy's
    # samples are informative (each bucket keeps at least rl_mix_floor of it)
    "rl_dynamic": Spec(False, "bool", "true or false"),
    "rl_max_draws": Spec(4, "int", "an integer in 1..64 (prompts drawn per update, at most, "
                                   "as a multiple of rl_prompts)", _upto(64)),
    "rl_mix": Spec("uniform", "choice", "one of " + ", ".join(RL_MIXES), choices=RL_MIXES),
    "rl_mix_floor": Spec(0.05, "float", "a number in [0, 1/len(rl_buckets)]",
                         lambda v: 0 <= v <= 1),
    "rl_eval_every": Spec(5, "int", "an integer > 0 (steps between probes)", _pos),
    # failure analysis (07)
    "n_fail": Spec(40, "int", f"an integer in 1..{MAX_EVAL:,} (problems per bucket)", _upto(MAX_EVAL)),
    "fail_samples": Spec(4, "int", f"an integer in 1..{MAX_SAMPLES} (samples per problem)",
                         _upto(MAX_SAMPLES)),
}
DEFAULTS = {k: s.default for k, s in SCHEMA.items()}


def _fail(key, value, rule):
    raise ParamError(f"parameter {key!r} = {value!r}: must be {rule}")


def check_value(key: str, value: Any) -> Any:
    """Validate one parameter; return it normalised (ints accepted where floats are)."""
    if key not in SCHEMA:
        raise ParamError(f"unknown parameter {key!r} (value {value!r}); "
                         f"allowed: {', '.join(SCHEMA)}")
    s = SCHEMA[key]
    isint = isinstance(value, int) and not isinstance(value, bool)
    if s.kind == "int":
        if not isint or not s.check(value):
            _fail(key, value, s.rule)
    elif s.kind == "float":
        if not (isint or isinstance(value, float)) or not math.isfinite(value) or not s.check(value):
            _fail(key, value, s.rule)
        value = float(value)
    elif s.kind == "bool":
        if not isinstance(value, bool):
            _fail(key, value, s.rule)
    elif s.kind == "str":
        if not isinstance(value, str) or not value.strip():
            _fail(key, value, s.rule)
    elif s.kind == "choice":
        if not isinstance(value, str) or value not in s.choices:
            _fail(key, value, s.rule)
    elif s.kind in ("list_choice", "list_int", "list_float"):
        if not isinstance(value, (list, tuple)) or not value:
            _fail(key, value, s.rule)
        for v in value:
            isnum = isinstance(v, (int, float)) and not isinstance(v, bool)
            if s.kind == "list_choice":
                ok = isinstance(v, str) and v in s.choices
            elif s.kind == "list_int":
                ok = isinstance(v, int) and not isinstance(v, bool) and s.check(v)
            else:
                ok = isnum and math.isfinite(v) and s.check(v)
            if not ok:
                _fail(key, value, s.rule + f" (bad entry {v!r})")
        if len(set(value)) != len(value):
            _fail(key, value, s.rule + " (duplicate entries)")
        value = [float(v) for v in value] if s.kind == "list_float" else list(value)
    return value


def validate(values: dict) -> types.SimpleNamespace:
    """Full parameter set: defaults overlaid with ``values``, each checked, then cross-checks."""
    p = dict(DEFAULTS)
    for k, v in values.items():
        p[k] = check_value(k, v)
    if p["n_embd"] % p["n_head"]:
        _fail("n_head", p["n_head"], f"a divisor of n_embd={p['n_embd']}")
    if max(p["ks"]) > p["n_samples"]:
        _fail("ks", p["ks"], f"values <= n_samples={p['n_samples']}")
    for key in ("buckets", "rl_buckets"):
        empty = [b for b in p[key] if bucket_size(b, p["max_digits"]) == 0]
        if empty:
            _fail(key, p[key], f"buckets that hold problems at max_digits={p['max_digits']} "
                               f"({', '.join(empty)} has none there: remove it)")
    if p["rl_mix_floor"] * len(p["rl_buckets"]) > 1:
        _fail("rl_mix_floor", p["rl_mix_floor"], f"<= 1/len(rl_buckets) = {1 / len(p['rl_buckets']):.4g}")
    if p["replay"] + p["mixed_replay"] >= 1:
        _fail("mixed_replay", p["mixed_replay"], f"< 1 - replay = {1 - p['replay']}")
    return types.SimpleNamespace(**p)


# per-bucket counts: a bucket that cannot supply the count gives what it can (one rule for
# all of them, applied by tasks.make_eval_set); collect() prints a note naming each cap
SIZE_KEYS = ("n_eval", "n_passk", "n_fail", "eval_n")


def size_notes(P: types.SimpleNamespace) -> list[str]:
    """One line per per-bucket count that some requested bucket cannot supply in full."""
    out = []
    for key in SIZE_KEYS:
        caps = capped_sizes(getattr(P, key), P.max_digits, P.buckets, P.eval_seed)
        if caps:
            out.append(f"note: {key} = {getattr(P, key):,} per bucket; capped where a bucket "
                       f"holds fewer eval problems: " + ", ".join(f"{b} {c:,}" for b, c in caps.items()))
    return out


_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def collect(namespace: dict) -> types.SimpleNamespace:
    """Validate the parameters living in a notebook's globals.

    Every public, non-module, non-callable global is taken for a parameter, so a name
    papermill injected that the schema does not know (a typo, a stale YAML key) is refused
    instead of silently ignored. Call it right after the parameters cell.
    """
    vals = {}
    for k, v in namespace.items():
        if k.startswith("_") or k in _IPYTHON_NAMES or isinstance(v, types.ModuleType) or callable(v):
            continue
        vals[k] = v
    P = validate(vals)
    for line in size_notes(P):
        print(line)
    return P


PROFILES_DIR = Path(__file__).resolve().parents[2] / "params"


def profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name_or_path: str) -> dict:
    """Read and validate a profile by name (``params/<name>.yaml``) or path; returns the raw
    mapping (what papermill gets with ``-f``)."""
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        p = PROFILES_DIR / f"{name_or_path}.yaml"
        if not p.is_file():
            raise ParamError(f"unknown profile {name_or_path!r}; allowed: {', '.join(profiles())}")
    if not p.is_file():
        raise ParamError(f"params file {str(p)!r} does not exist")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ParamError(f"params file {str(p)!r} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ParamError(f"params file {str(p)!r} must hold a mapping of parameter: value, "
                         f"got {type(raw).__name__}")
    validate(raw)
    return raw
