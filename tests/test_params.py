import math
import os
import types
from pathlib import Path

import pytest
import yaml

from reasonlib.train import params
from reasonlib.train.params import DEFAULTS, SCHEMA, ParamError

SMOKE = Path(__file__).resolve().parent.parent / "params" / "smoke.yaml"


def _raises(values, *needles):
    """validate(values) must raise ParamError whose message contains every needle."""
    with pytest.raises(ParamError) as e:
        params.validate(values)
    msg = str(e.value)
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


def _rule_of(key):
    return SCHEMA[key].rule


# ---- defaults and profiles --------------------------------------------------------------------
@pytest.mark.skipif(not SMOKE.is_file(), reason="params/smoke.yaml not written yet")
def test_defaults_equal_smoke_profile():
    raw = yaml.safe_load(SMOKE.read_text())
    assert raw == DEFAULTS


def test_every_default_has_one_home():
    """Configs, schema and smoke profile agree on every default (the notebooks' parameter
    cells are compared with the smoke profile in test_notebooks.py)."""
    import dataclasses

    from reasonlib.train import rl, sft
    from reasonlib.core.model import ModelConfig

    for f in dataclasses.fields(sft.SFTConfig):
        if f.name not in sft.CONFIG_ONLY:
            assert f.name in SCHEMA, f"SFTConfig.{f.name} has no parameter"
            assert f.default == DEFAULTS[f.name], f"SFTConfig.{f.name}"
    config_only = {"init", "warmup_steps", "log_kl_at_zero_beta"}  # no parameter sets them
    for f in dataclasses.fields(rl.RLConfig):
        if f.name in config_only:
            continue
        key = rl.RL_PARAMS[f.name]
        want = DEFAULTS[key]
        assert (list(f.default) if isinstance(f.default, tuple) else f.default) == want, \
            f"RLConfig.{f.name} vs parameter {key}"
    assert set(rl.RL_PARAMS) | config_only == {f.name for f in dataclasses.fields(rl.RLConfig)}
    for name in ("n_layer", "n_head", "n_embd", "block_size"):   # the shape has no default
        f = {f.name: f for f in dataclasses.fields(ModelConfig)}[name]
        assert f.default is dataclasses.MISSING, name
    # configs built from the default parameters are the configs' own defaults
    P = params.validate({})
    scfg = sft.config_from_params(P, "targeted")
    assert scfg == sft.SFTConfig()
    assert rl.config_from_params(P, scfg) == rl.RLConfig(init=rl.init_key(scfg))
    assert yaml.safe_load(SMOKE.read_text()) == DEFAULTS


def test_defaults_validate():
    P = params.validate({})
    assert isinstance(P, types.SimpleNamespace)
    assert vars(P) == DEFAULTS
    for k, s in SCHEMA.items():
        assert params.check_value(k, s.default) == s.default, k


def test_float_params_accept_ints_normalised():
    P = params.validate({"lr": 1, "weight_decay": 0})
    assert P.lr == 1.0 and isinstance(P.lr, float)
    assert isinstance(P.weight_decay, float)


@pytest.mark.parametrize("name", params.profiles() or ["<none>"])
def test_shipped_profiles_validate(name):
    if name == "<none>":
        pytest.skip("no profiles in params/ yet")
    raw = params.load_profile(name)
    assert set(raw) <= set(SCHEMA)


# ---- wrong types, for every key ------------------------------------------------------------------
def _wrong_typed(spec):
    if spec.kind == "list_choice":
        return spec.choices[0]  # a valid name, but a bare str instead of a list
    return {"int": "3", "float": "0.5", "str": 5, "choice": 1, "list_int": "1,2",
            "list_float": "0.1,0.2", "bool": "yes"}[spec.kind]


@pytest.mark.parametrize("key", list(SCHEMA))
def test_every_key_rejects_wrong_type(key):
    bad = _wrong_typed(SCHEMA[key])
    _raises({key: bad}, repr(key), repr(bad), _rule_of(key))


@pytest.mark.parametrize("key", [k for k, s in SCHEMA.items() if s.kind in ("int", "float")])
@pytest.mark.parametrize("bad", [True, None, [1], float("nan")])
def test_numeric_keys_reject_non_numbers(key, bad):
    if isinstance(bad, float) and math.isnan(bad):
        msg = _raises({key: bad}, repr(key), _rule_of(key))
        assert "nan" in msg
    else:
        _raises({key: bad}, repr(key), repr(bad), _rule_of(key))


@pytest.mark.parametrize("key", [k for k, s in SCHEMA.items() if s.kind == "int"])
def test_int_keys_reject_floats(key):
    _raises({key: 2.0}, repr(key), "2.0", _rule_of(key))


@pytest.mark.parametrize("key,bad", [("ks", [1, "2"]), ("ks", [1, 2.0]), ("ks", [1, True]),
                                     ("ks", [1, 0]), ("ks", [4, -4])])
def test_list_entry_wrong(key, bad):
    msg = _raises({key: bad}, repr(key), repr(bad), _rule_of(key))
    assert "bad entry" in msg


@pytest.mark.parametrize("key,bad", [("ks", []), ("ks", [1, 1]), ("curricula", []),
                                     ("curricula", ["control", "control"]), ("buckets", ())])
def test_lists_empty_or_duplicate(key, bad):
    _raises({key: bad}, repr(key), repr(bad), _rule_of(key))


# ---- ranges and allowed values ---------------------------------------------------------------------
@pytest.mark.parametrize("key,bad", [("n_layer", 0), ("n_head", -1), ("n_embd", 0),
                                     ("batch_size", -1), ("total_tokens", 0), ("eval_every", 0),
                                     ("n_samples", 0), ("max_digits", 0), ("max_digits", 7),
                                     ("seed", -1), ("top_k", -3), ("lr", 0.0), ("lr", -1e-3),
                                     ("temperature", 0), ("grad_clip", 0.0),
                                     ("warmup_frac", 1.0), ("min_lr_frac", 1.5),
                                     ("replay", -0.1), ("weight_decay", -0.1),
                                     ("run_dir", ""), ("artifacts_dir", "   ")])
def test_out_of_range(key, bad):
    _raises({key: bad}, repr(key), repr(bad), _rule_of(key))


@pytest.mark.parametrize("key,bad", [("n_eval", 10**6), ("n_passk", 10**6), ("n_fail", 10**6),
                                     ("n_samples", 10**6), ("fail_samples", 10**6),
                                     ("rl_group", 10**6), ("rl_prompts", 10**6),
                                     ("batch_size", 10**7), ("n_layer", 1000), ("n_embd", 10**5),
                                     ("temperature", 1e-300), ("temperature", 1e6),
                                     ("rl_steps", 10**9), ("total_tokens", 10**15)])
def test_sizes_beyond_what_a_run_can_do_are_refused(key, bad):
    """A size whose run would not finish in time proportional to it (or not fit in memory)
    is refused before compute, naming the key, the value and the allowed range."""
    import time
    t0 = time.perf_counter()
    _raises({key: bad}, repr(key), repr(bad), _rule_of(key))
    assert time.perf_counter() - t0 < 1


@pytest.mark.parametrize("key", params.SIZE_KEYS)
def test_counts_a_bucket_cannot_supply_are_capped_with_a_note(key):
    vals = {key: 1000}
    P = params.validate(vals)
    notes = [n for n in params.size_notes(P) if n.startswith(f"note: {key} =")]
    assert len(notes) == 1
    # d1 is evaluated in full; the small buckets give their held-out 30%
    assert "d1 100" in notes[0] and "low_sum 93" in notes[0] and "general" not in notes[0]
    # the smoke sizes fit every bucket but low_sum, whose held-out part has 93 problems
    assert params.size_notes(params.validate({})) == [
        "note: n_eval = 100 per bucket; capped where a bucket holds fewer eval problems: low_sum 93"]


def test_collect_prints_the_cap_notes(capsys):
    ns = {"n_eval": 5000, "max_digits": 2}
    params.collect(ns)
    out = capsys.readouterr().out
    assert "note: n_eval = 5,000" in out and "d2_carry 1,836" in out and "d1 100" in out


@pytest.mark.parametrize("key,bad,allowed", [
    ("device", "gpu", params.DEVICES),
    ("fmt", "binary", ("plain", "reversed", "scratchpad")),
    ("curricula", ["control", "random"], ("control", "targeted")),
    ("buckets", ["d1", "d3"], ("d1", "general", "ood_long")),
])
def test_unknown_choices_list_allowed(key, bad, allowed):
    msg = _raises({key: bad}, repr(key), repr(bad))
    for a in allowed:
        assert a in msg


def test_unknown_key():
    msg = _raises({"n_layers": 3}, "'n_layers'", "3", "allowed")
    for k in SCHEMA:
        assert k in msg


def test_ks_above_n_samples():
    _raises({"ks": [1, 32], "n_samples": 16}, "ks = [1, 32]", "n_samples = 16", "n_samples = 32 would work")
    params.validate({"ks": [1, 16], "n_samples": 16})


def test_n_head_must_divide_n_embd():
    _raises({"n_embd": 64, "n_head": 6}, "n_head = 6", "n_embd = 64", "must divide", "n_head = 4 would work")
    _raises({"n_embd": 30}, "n_head = 4", "n_embd = 30", "n_head = 3 would work")
    params.validate({"n_embd": 48, "n_head": 6})


def test_mixed3_needs_two_digits():
    _raises({"max_digits": 1}, "buckets = [", "mixed3", "holds no problems at max_digits = 1")
    assert params.validate({"max_digits": 1, "buckets": ["d1", "general"]}).max_digits == 1
    _raises({"max_digits": 1, "buckets": ["d1"], "rl_buckets": ["mixed3"]}, "rl_buckets = ['mixed3']", "mixed3")


def test_replay_sum_below_one():
    _raises({"replay": 0.6, "mixed_replay": 0.4}, "mixed_replay = 0.4", "replay = 0.6",
            "replay + mixed_replay < 1", "would work")


def test_cross_checks_catch_what_training_would_reject():
    """Everything validate() accepts builds an SFT config and a model."""
    from reasonlib.train import sft
    P = params.validate({"n_embd": 48, "n_head": 6, "replay": 0.5, "mixed_replay": 0.49})
    for c in P.curricula:
        sft.config_from_params(P, c).model_config()


# ---- load_profile -------------------------------------------------------------------------------
@pytest.fixture
def profiles_dir(tmp_path, monkeypatch):
    d = tmp_path / "params"
    d.mkdir()
    (d / "tiny.yaml").write_text("seed: 3\nn_layer: 1\n")
    (d / "wide.yaml").write_text("n_embd: 128\n")
    monkeypatch.setattr(params, "PROFILES_DIR", d)
    return d


def test_load_profile_by_name_and_path(profiles_dir):
    assert params.profiles() == ["tiny", "wide"]
    assert params.load_profile("tiny") == {"seed": 3, "n_layer": 1}
    assert params.load_profile(str(profiles_dir / "wide.yaml")) == {"n_embd": 128}


def test_load_profile_unknown_name_lists_allowed(profiles_dir):
    with pytest.raises(ParamError) as e:
        params.load_profile("huge")
    msg = str(e.value)
    assert "'huge'" in msg and "tiny" in msg and "wide" in msg


def test_load_profile_missing_path(tmp_path):
    p = tmp_path / "missing.yaml"
    with pytest.raises(ParamError, match="does not exist") as e:
        params.load_profile(str(p))
    assert str(p) in str(e.value)


def test_load_profile_malformed_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("seed: [1, 2\nlr: 0.1\n")
    with pytest.raises(ParamError, match="not valid YAML") as e:
        params.load_profile(str(p))
    assert str(p) in str(e.value)


@pytest.mark.parametrize("text,kind", [("- seed\n- 3\n", "list"), ("", "NoneType"),
                                       ("42\n", "int")])
def test_load_profile_not_a_mapping(tmp_path, text, kind):
    p = tmp_path / "notmap.yml"
    p.write_text(text)
    with pytest.raises(ParamError, match="mapping") as e:
        params.load_profile(str(p))
    assert str(p) in str(e.value) and kind in str(e.value)


def test_load_profile_validates_values(tmp_path):
    p = tmp_path / "badval.yaml"
    p.write_text("n_layer: 0\n")
    with pytest.raises(ParamError, match="'n_layer' = 0"):
        params.load_profile(str(p))
    p.write_text("n_layers: 2\n")
    with pytest.raises(ParamError, match="unknown parameter 'n_layers'"):
        params.load_profile(str(p))


@pytest.mark.parametrize("text, needles", [
    ("seed: 1\nn_layer: 2\nn_layer: 3\n", [":3:", "'n_layer' appears twice", "first at line 2"]),
    ("seed: 1\nn_layr: 2\n", [":2:", "unknown parameter 'n_layr'", "did you mean 'n_layer'?"]),
    ("lr: .nan\n", [":1:", "'lr' = nan", "finite"]),
    ("seed: 0\nbeta: -.inf\n", [":2:", "'beta' = -inf", "finite"]),
    ("seed: 0\n\nn_layer: '2'\n", [":3:", "'n_layer' = '2'", "an integer"]),
    ("betas: [0.0, .inf]\n", [":1:", "'betas'", "inf"]),
    ("total_tokens: 1\n", ["total_tokens = 1", "one batch", "would work"]),
])
def test_profiles_are_read_strictly_naming_file_and_line(tmp_path, text, needles):
    p = tmp_path / "strict.yaml"
    p.write_text(text)
    with pytest.raises(ParamError) as e:
        params.load_profile(str(p))
    msg = str(e.value)
    assert msg.startswith(str(p)), msg
    for n in needles:
        assert n in msg, (n, msg)



# ---- collect -----------------------------------------------------------------------------------
def test_collect_ignores_non_parameters():
    ns = {"__name__": "__main__", "_private": 1, "os": os, "yaml": yaml,
          "helper": lambda: 1, "Cls": ParamError, "In": [""], "Out": {}, "get_ipython": None,
          "seed": 7, "lr": 0.01, "fmt": "plain"}
    P = params.collect(ns)
    assert (P.seed, P.lr, P.fmt) == (7, 0.01, "plain")
    assert P.n_layer == DEFAULTS["n_layer"]
    assert not hasattr(P, "helper") and not hasattr(P, "_private")


def test_collect_refuses_unknown_public_name():
    with pytest.raises(ParamError, match="unknown parameter 'sede'"):
        params.collect({"seed": 1, "sede": 2})


def test_collect_validates_values():
    with pytest.raises(ParamError, match="'batch_size' = -1"):
        params.collect({"batch_size": -1})


@pytest.mark.parametrize("key", ["lr", "temperature", "grad_clip", "weight_decay"])
@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_floats_refused(key, bad):
    with pytest.raises(params.ParamError, match=key):
        params.validate({key: bad})
