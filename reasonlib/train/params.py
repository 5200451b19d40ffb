"""Notebook / CLI parameters: one flat schema, YAML profiles, validation before compute.

Every notebook's ``parameters`` cell holds flat literals whose defaults are the ``smoke``
sizes (``params/smoke.yaml`` equals :data:`DEFAULTS`, a test checks it). The next cell calls
:func:`collect` on the notebook's globals: every parameter papermill injected is checked
(type, range, allowed values), unknown names are refused, and derived configs are built
from the result. Errors name the key, the value and what is allowed.
"""
from __future__ import annotations

import difflib
import math
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from .curriculum import CURRICULA
from ..core.schemes import MAX_PLACE, POS_SCHEMES, ROTARY
from ..core.tasks import BUCKETS, FORMATS, MAX_RESERVED, MAX_VAL, bucket_size, capped_sizes, max_row_tokens
from ..core.tokenizer import VOCAB_SIZE

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
    # the length-pair grid (08): every (digits of a, digits of b) up to D + 3, per SFT arm
    "n_grid": Spec(20, "int", f"an integer in 1..{MAX_EVAL:,} (problems per length-pair cell)",
                   _upto(MAX_EVAL)),
    # abacus, coupled, local: each training row's places are shifted by one random offset in
    # 0..pos_offset, so the places of numbers longer than the trained ones are trained too
    # (ignored by the other schemes); the bound keeps abacus's table large enough
    "pos_offset": Spec(0, "int", f"an integer in 0..{MAX_PLACE - 16} (largest random place "
                                 "offset in training; abacus, coupled and local only)",
                       _upto(MAX_PLACE - 16, lo=0)),
    "total_tokens": Spec(150_000, "int",
                         "an integer in 1..10^11 (training tokens per curriculum)", _upto(10 ** 11)),
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
    "eval_n": Spec(30, "int", f"an integer in 1..{MAX_VAL:,} (validation problems per bucket "
                              f"for the probe during training)", _upto(MAX_VAL)),
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
        near = difflib.get_close_matches(str(key), SCHEMA, n=1)
        raise ParamError(f"unknown parameter {key!r} (value {value!r})"
                         + (f"; did you mean {near[0]!r}?" if near else "")
                         + f"; allowed: {', '.join(SCHEMA)}")
    s = SCHEMA[key]
    isint = isinstance(value, int) and not isinstance(value, bool)
    if s.kind == "int":
        if not isint or not s.check(value):
            _fail(key, value, s.rule)
    elif s.kind == "float":
        if isinstance(value, float) and not math.isfinite(value):
            _fail(key, value, s.rule + " (a finite number: not nan or inf)")
        if not (isint or isinstance(value, float)) or not s.check(value):
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
    """Full parameter set: defaults overlaid with ``values``, each checked, then every rule of
    :data:`RULES` that ties parameters together. Nothing is computed before it returns."""
    p = dict(DEFAULTS)
    for k, v in values.items():
        p[k] = check_value(k, v)
    for rule in RULES:
        rule(p)
    return types.SimpleNamespace(**p)


# ---- the rules that tie parameters together ---------------------------------------------
# Each rule raises a ParamError naming the parameters, their values, the rule and a value
# that would work. They read only the parameter values (and the task's sizes), so a set
# that cannot work is refused before a notebook imports torch.
MAX_WEIGHTS = 2 ** 30   # a model's weights, at most: AdamW training needs about 16 bytes each


def _cross(keys, p, rule, works):
    vals = ", ".join(f"{k} = {p[k]!r}" for k in keys)
    raise ParamError(f"parameters {vals}: {rule}; {works}")


def _head_size(p):
    if p["n_embd"] % p["n_head"]:
        ok = max(h for h in range(1, p["n_head"] + 1) if p["n_embd"] % h == 0)
        _cross(("n_embd", "n_head"), p, "n_head must divide n_embd (the head size is whole)",
               f"n_head = {ok} would work")
    rotary = [s for s in dict.fromkeys([p["pos"], *p["positions"]]) if s in ROTARY]
    if rotary and (p["n_embd"] // p["n_head"]) % 2:
        even = [h for h in range(p["n_head"], 0, -1)
                if p["n_embd"] % h == 0 and (p["n_embd"] // h) % 2 == 0]
        h = p["n_head"]   # no head count gives an even head of an odd n_embd: round it up
        works = (f"n_head = {even[0]} would work" if even else
                 f"n_embd = {2 * h * -(-p['n_embd'] // (2 * h))} would work")
        _cross(("n_embd", "n_head", "pos", "positions"), p,
               f"the head size n_embd / n_head = {p['n_embd'] // p['n_head']} must be even for the "
               f"rotary schemes ({', '.join(rotary)}), which rotate channel pairs", works)


def _model_size(p):
    C, L = p["n_embd"], p["n_layer"]
    weights = L * 12 * C * C + VOCAB_SIZE * C
    if weights > MAX_WEIGHTS:
        ok = max(1, (MAX_WEIGHTS - VOCAB_SIZE * C) // (12 * C * C))
        _cross(("n_layer", "n_embd"), p, f"a model of about {weights:.3g} weights is more than "
               f"{MAX_WEIGHTS:,} (AdamW needs about 16 bytes a weight to train)",
               f"n_layer = {ok} would work" if 12 * C * C <= MAX_WEIGHTS else "a smaller n_embd")


def _sft_budget(p):
    """Every SFT arm trains on ``total_tokens``; a batch holds at most ``batch_size`` rows of
    the longest training row, so at least ``total_tokens // (batch_size * row)`` steps are
    taken. They must hold one batch in every trained format, and in the curriculum arms'
    format (they keep a snapshot at every probe, which 05 and 06 start RL from) a probe
    before the last step. (A warmup shorter than one step is not refused: the first step
    then runs at a tiny rate, and training goes on.)"""
    D, B, total, every = (p[k] for k in ("max_digits", "batch_size", "total_tokens", "eval_every"))
    fmts = list(dict.fromkeys([p["fmt"], *p["formats"]]))
    batch = {f: B * max_row_tokens(D, f) for f in fmts}
    works = f"total_tokens = {max([*batch.values(), (every + 1) * batch[p['fmt']]]):,} would work"
    for f in fmts:
        if total < batch[f]:
            _cross(("total_tokens", "batch_size", "max_digits"), p,
                   f"the budget must hold at least one batch ({B} rows of up to "
                   f"{batch[f] // B} tokens in the {f} format = {batch[f]:,} tokens)", works)
    steps = total // batch[p["fmt"]]
    if steps <= every:
        _cross(("total_tokens", "batch_size", "eval_every"), p,
               f"a probe (and its snapshot) must come before the last step: at least {steps} "
               f"steps are taken, the first probe is at step {every}",
               (f"eval_every = {steps - 1} or " if steps >= 2 else "") + works)


def _samples(p):
    if max(p["ks"]) > p["n_samples"]:
        _cross(("ks", "n_samples"), p, "pass@k needs k <= n_samples samples per problem",
               f"n_samples = {max(p['ks'])} would work")


def _buckets(p):
    for key in ("buckets", "rl_buckets"):
        empty = [b for b in p[key] if bucket_size(b, p["max_digits"]) == 0]
        if empty:
            kept = [b for b in p[key] if b not in empty] or ["general"]
            _cross((key, "max_digits"), p, f"{', '.join(empty)} holds no problems at "
                   f"max_digits = {p['max_digits']}", f"{key} = {kept} would work")


def _rl(p):
    if p["rl_mix_floor"] * len(p["rl_buckets"]) > 1:
        _cross(("rl_mix_floor", "rl_buckets"), p, "every bucket's least share times the number "
               "of buckets must be at most 1", f"rl_mix_floor = {1 / len(p['rl_buckets']):.4g} would work")
    if p["rl_eval_every"] > p["rl_steps"]:
        _cross(("rl_eval_every", "rl_steps"), p, "RL's probe curve needs a probe within its steps",
               f"rl_eval_every = {p['rl_steps']} would work")


def _replay(p):
    if p["replay"] + p["mixed_replay"] >= 1:
        _cross(("replay", "mixed_replay"), p, "the replayed shares must leave room for the "
               "stage's own problems (replay + mixed_replay < 1)",
               f"mixed_replay = {max(0.0, round(0.99 - p['replay'], 2))} would work")


RULES = (_head_size, _model_size, _sft_budget, _samples, _buckets, _rl, _replay)


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
    mapping (what papermill gets with ``-f``). Strict: a key given twice, an unknown key (with
    the nearest known one), a value of the wrong type and a non-finite number are refused,
    naming the file and the line."""
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        p = PROFILES_DIR / f"{name_or_path}.yaml"
        if not p.is_file():
            raise ParamError(f"unknown profile {name_or_path!r}; allowed: {', '.join(profiles())}")
    if not p.is_file():
        raise ParamError(f"params file {str(p)!r} does not exist")
    text = p.read_text()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ParamError(f"params file {str(p)!r} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ParamError(f"params file {str(p)!r} must hold a mapping of parameter: value, "
                         f"got {type(raw).__name__}")
    lines = _key_lines(root, p)
    for k, v in raw.items():
        try:
            check_value(k, v)
        except ParamError as e:
            raise ParamError(f"{p}:{lines.get(k, '?')}: {e}") from None
    try:
        validate(raw)
    except ParamError as e:
        raise ParamError(f"{p}: {e}") from None
    return raw


def _key_lines(node, path: Path) -> dict:
    """``{key: line}`` of a YAML document's top-level mapping; a key that appears twice in any
    mapping of it is refused (YAML would keep the last value silently)."""
    def walk(n):
        if isinstance(n, yaml.MappingNode):
            seen = {}
            for k, v in n.value:
                line = k.start_mark.line + 1
                if k.value in seen:
                    raise ParamError(f"{path}:{line}: key {k.value!r} appears twice (first at "
                                     f"line {seen[k.value]}); give each parameter once")
                seen[k.value] = line
                walk(v)
            return seen
        if isinstance(n, yaml.SequenceNode):
            for v in n.value:
                walk(v)
        return {}
    return walk(node)
