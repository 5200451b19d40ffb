import numpy as np
import pytest
import torch

from conftest import make_model
from reasonlib.report import explorer
from reasonlib.core import failures, metrics, sampling, tasks
from reasonlib.core.tokenizer import BOS, EOS, PAD, decode_answer, encode

pytest.importorskip("ipywidgets")


@pytest.fixture(scope="module")
def eval_set():
    return tasks.make_eval_set(2, 5, 0).subset(3)


@pytest.fixture(scope="module")
def models():
    return {"flat": make_model(seed=0), "peaked": make_model(seed=1, out_scale=20.0, w_scale=5.0)}


@pytest.fixture(scope="module")
def records(models, eval_set):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return explorer.collect_records(models, eval_set, "plain", n_samples=2, seed=0)
    finally:
        torch.set_num_threads(n)


# ---- collect_records / count_table ---------------------------------------------------
def test_collect_records_one_per_checkpoint_bucket_problem(records, models, eval_set):
    want = [(name, bucket, int(x), int(y)) for name in models
            for bucket, (a, b) in eval_set.problems.items() for x, y in zip(a, b)]
    assert len(want) == 2 * len(tasks.BUCKETS) * 3
    assert [(r["checkpoint"], r["bucket"], r["a"], r["b"]) for r in records] == want
    for r in records:
        assert r["class"] in failures.ALL
        pred = tasks.parse_answer(r["greedy"], "plain")
        assert r["class"] == failures.classify(r["a"], r["b"], pred)
        assert len(r["samples"]) == len(r["sample_classes"]) == 2
        assert all(c in failures.ALL for c in r["sample_classes"])
        assert all(isinstance(t, str) for t in r["samples"])
        # the generated ids travel with the text (which loses bytes that are not UTF-8)
        assert decode_answer(r["greedy_ids"]) == r["greedy"]
        assert all(0 <= t < 256 for t in r["greedy_ids"]) and len(r["greedy_ids"]) <= 5
    assert any(any(t >= 128 for t in r["greedy_ids"]) for r in records)  # non-ASCII occurs


def test_collect_records_greedy_matches_greedy_eval(records, models, eval_set):
    for name, model in models.items():
        ge = metrics.greedy_eval(model, eval_set, "plain")
        got = {b: [r["greedy"] for r in records if r["checkpoint"] == name and r["bucket"] == b]
               for b in eval_set.buckets}
        assert got == {b: v["answers"] for b, v in ge.items()}


def test_collect_records_is_seeded(records, models, eval_set):
    again = explorer.collect_records(models, eval_set, "plain", n_samples=2, seed=0)
    assert again == records
    other = explorer.collect_records({"peaked": models["peaked"]}, eval_set, "plain",
                                     n_samples=2, seed=1)
    mine = [r["samples"] for r in records if r["checkpoint"] == "peaked"]
    assert [r["samples"] for r in other] != mine


def test_count_table_sums_to_wrong_greedy_answers(records):
    counts, rows = explorer.count_table(records)
    assert rows == list(dict.fromkeys((r["checkpoint"], r["bucket"]) for r in records))
    assert len(rows) == 2 * len(tasks.BUCKETS)
    for key in rows:
        wrong = sum(r["class"] != "correct" for r in records
                    if (r["checkpoint"], r["bucket"]) == key)
        assert set(counts[key]) == set(failures.CLASSES)
        assert sum(counts[key].values()) == wrong


def _rec(ck, bucket, a, b, greedy, fmt="plain", samples=("7", "x")):
    return {"checkpoint": ck, "bucket": bucket, "a": a, "b": b, "greedy": greedy,
            "class": failures.classify(a, b, tasks.parse_answer(greedy, fmt)),
            "samples": list(samples),
            "sample_classes": [failures.classify(a, b, tasks.parse_answer(t, fmt))
                               for t in samples]}


HAND = [
    _rec("sft", "mixed", 12, 3, "18"),        # digit_sub
    _rec("sft", "mixed", 12, 3, "15"),        # correct
    _rec("sft", "d2_carry", 47, 85, "122"),   # carry
    _rec("sft", "d2_carry", 47, 85, "4785"),  # operand_dup
    _rec("sft", "mixed", 5, 17, "1x"),        # format
    _rec("sft", "mixed", 12, 3, "40"),        # other
    _rec("rl", "mixed", 12, 3, "15"),         # correct
    _rec("rl", "d2_carry", 47, 85, "122"),    # carry
    _rec("rl", "d2_carry", 58, 67, "115"),    # carry (125: tens carry dropped)
]


def test_count_table_hand_made():
    assert [r["class"] for r in HAND] == ["digit_sub", "correct", "carry", "operand_dup", "format",
                                          "other", "correct", "carry", "carry"]
    counts, rows = explorer.count_table(HAND)
    assert rows == [("sft", "mixed"), ("sft", "d2_carry"), ("rl", "mixed"), ("rl", "d2_carry")]
    assert counts[("sft", "mixed")] == {"format": 1, "operand_dup": 0, "carry": 0,
                                        "digit_count": 0, "digit_sub": 1, "other": 1}
    assert counts[("sft", "d2_carry")]["carry"] == 1
    assert counts[("sft", "d2_carry")]["operand_dup"] == 1
    assert sum(counts[("rl", "mixed")].values()) == 0
    assert counts[("rl", "d2_carry")]["carry"] == 2
    # a restricted class list counts only those
    c2, _ = explorer.count_table(HAND, classes=("carry",))
    assert c2[("rl", "d2_carry")] == {"carry": 2}


# ---- answer_token_probs --------------------------------------------------------------
def test_answer_token_probs_match_direct_forward(tiny_model):
    got = explorer.answer_token_probs(tiny_model, 12, 3, "15")
    assert [c for c, _ in got] == ["1", "5", "⏎"]
    ids = torch.tensor([[BOS] + encode("12+3=15") + [EOS]])
    with torch.no_grad():
        logp = torch.log_softmax(tiny_model(ids[:, :-1]), -1)[0]
    P = len(encode("12+3="))  # position of "=" (BOS is at 0), which predicts the first digit
    want = [logp[P + j, ids[0, P + 1 + j]].exp().item() for j in range(3)]
    np.testing.assert_allclose([p for _, p in got], want, rtol=1e-5)
    assert all(0 < p <= 1 for _, p in got)
    # the empty answer: only EOS
    (c, p), = explorer.answer_token_probs(tiny_model, 12, 3, "")
    assert c == "⏎" and p == pytest.approx(logp[P, EOS].exp().item(), rel=1e-5)


def test_answer_token_probs_match_the_sampler(peaked_model):
    """The probabilities shown for a greedy answer are those the sampler saw when it chose
    each token (left-padded batch, KV cache) - here for a model that emits non-ASCII bytes."""
    a, b = np.array([12, 5, 47]), np.array([3, 17, 85])
    p, v = tasks.render_prompts(a, b)
    g = sampling.generate(peaked_model, p, v, 5)
    recs = explorer.collect_records({"m": peaked_model},
                                    tasks.EvalSet({"mixed": (a, b)}, 2, 0), "plain", n_samples=1)
    assert (g.tokens[:, 0] >= 128).any()  # bytes that do not decode on their own
    for i, rec in enumerate(recs):
        n = next((j for j, t in enumerate(g.tokens[i]) if t in (EOS, PAD)), g.tokens.shape[1])
        ids = rec.get("greedy_ids", rec["greedy"])
        probs = explorer.answer_token_probs(peaked_model, rec["a"], rec["b"], ids)
        assert len(probs) == n + 1
        np.testing.assert_allclose([q for _, q in probs[:n]], np.exp(g.logprobs[i, :n]), rtol=1e-4)
        assert rec["greedy_ids"] == g.tokens[i, :n].tolist()
        # printable ASCII as itself, any other byte (control characters too) escaped
        assert [c for c, _ in probs] == [chr(t) if 32 <= t < 127 else f"\\x{t:02x}"
                                         for t in g.tokens[i, :n]] + ["⏎"]


def test_greedy_answer_that_stops_at_once():
    """A model that answers EOS straight away: empty text, no ids, one probability (EOS)."""
    m = make_model(seed=0)
    head = torch.nn.Linear(m.cfg.n_embd, m.cfg.vocab_size, bias=True)
    head.weight = m.tok.weight
    with torch.no_grad():
        head.bias.zero_()
        head.bias[EOS] = 8.0
    m.head = head
    ev = tasks.EvalSet({"mixed": (np.array([12, 5]), np.array([3, 17]))}, 2, 0)
    recs = explorer.collect_records({"eos": m}, ev, "plain", n_samples=2)
    assert [(r["greedy"], r["greedy_ids"], r["class"]) for r in recs] == [("", [], "format")] * 2
    ex = explorer.Explorer(recs, models={"eos": m})
    assert ex.summary.value == "2 matching problems"
    assert ex.html.value.count("<td") == 1 and "⏎" in ex.html.value


# ---- the widget, driven headlessly ---------------------------------------------------
def test_explorer_filters_and_renders():
    ex = explorer.Explorer(HAND)
    assert list(ex.checkpoint.options) == ["sft", "rl"]
    assert list(ex.bucket.options) == ["(all)", "mixed", "d2_carry"]
    assert list(ex.klass.options) == ["(all wrong)", *failures.ALL]
    # defaults: first checkpoint, all buckets, all wrong answers
    assert ex.checkpoint.value == "sft"
    assert ex.summary.value == "5 matching problems" and ex.index.max == 4
    assert "12+3=" in ex.html.value and "digit_sub" in ex.html.value
    ex.klass.value = "carry"
    assert ex.summary.value == "1 matching problems" and ex.index.max == 0
    assert "47+85=" in ex.html.value and "<b>carry</b>" in ex.html.value
    assert "(sum 132)" in ex.html.value and "122" in ex.html.value
    ex.checkpoint.value = "rl"
    assert ex.summary.value == "2 matching problems" and ex.index.max == 1
    assert "47+85=" in ex.html.value
    ex.index.value = 1
    assert "58+67=" in ex.html.value and "(sum 125)" in ex.html.value
    ex.klass.value = "correct"
    assert ex.summary.value == "1 matching problems" and ex.index.value == 0
    assert "12+3=" in ex.html.value and "<b>correct</b>" in ex.html.value
    ex.bucket.value = "d2_carry"
    assert ex.summary.value == "0 matching problems" and ex.index.max == 0
    assert "no problem matches" in ex.html.value
    ex.checkpoint.value = "sft"
    ex.klass.value = "(all wrong)"
    assert ex.summary.value == "2 matching problems"
    assert "per-token probability" not in ex.html.value  # no models given
    assert "<table" not in ex.html.value


def test_explorer_escapes_html():
    ex = explorer.Explorer([_rec("<ck>", "mixed", 1, 2, "<b>", samples=("&",))])
    assert "<b>&lt;ck&gt;</b>" in ex.html.value and "&#x27;&lt;b&gt;&#x27;" in ex.html.value
    assert "&#x27;&amp;&#x27;" in ex.html.value


def test_explorer_with_models_shows_token_probabilities(tiny_model):
    ex = explorer.Explorer(HAND, models={"sft": tiny_model})
    ex.klass.value = "digit_sub"
    h = ex.html.value
    assert "per-token probability" in h and "<table>" in h
    want = explorer.answer_token_probs(tiny_model, 12, 3, "18")
    assert [c for c, _ in want] == ["1", "8", "⏎"]
    for c, p in want:
        assert f"{c}<br><small>{p:.2f}</small>" in h
    ex.klass.value = "carry"
    ex.checkpoint.value = "rl"  # no model for this checkpoint: no table
    assert "per-token probability" not in ex.html.value and "47+85=" in ex.html.value


def test_explorer_on_collected_records(records, models):
    ex = explorer.Explorer(records, models=models)
    for name in models:
        ex.checkpoint.value = name
        for k in ("(all wrong)", *failures.ALL):
            ex.klass.value = k
            n = sum(r["checkpoint"] == name and (r["class"] == k if k != "(all wrong)"
                                                 else r["class"] != "correct") for r in records)
            assert ex.summary.value == f"{n} matching problems"
            assert ex.index.max == max(0, n - 1)
            if n:
                assert "per-token probability" in ex.html.value
                rec = ex.matches()[0]
                assert ex.html.value.count("<td") == len(rec["greedy_ids"]) + 1
            else:
                assert "no problem matches" in ex.html.value


def test_record_view_shows_label_strip_alternatives_and_command(tiny_model):
    rec = dict(_rec("sft", "mixed", 12, 3, "18"), held_out=True, greedy_ids=list(b"18"))
    dists = explorer.answer_token_dists(tiny_model, 12, 3, rec["greedy_ids"])
    assert [d["token"] for d in dists] == ["1", "8", "⏎"] and all(len(d["top"]) == 3 for d in dists)
    assert all(d["top"][0][1] >= d["p"] - 1e-9 for d in dists)   # the top choice is the most likely
    # 12+3 = 15: "18" leaves the answer at its second token (plain format)
    assert explorer.first_wrong(rec, "plain") == 1 and explorer.first_wrong(dict(rec, greedy_ids=list(b"15")), "plain") is None
    h = explorer.render_record(rec, dists=dists, fmt="plain", command="papermill x.ipynb y.ipynb -p seed 0")
    assert "held out" in h and h.count("<rect") == 3 and 'stroke="black"' in h   # one bar each, wrong one marked
    assert "at the first wrong token (#2" in h and "top choices" in h
    assert "copy-command" in h and "papermill x.ipynb y.ipynb -p seed 0" in h
    assert "seen in training" in explorer.render_record(dict(rec, held_out=False))


def test_a_raising_callback_is_shown_in_the_page():
    ex = explorer.Explorer(HAND)
    def boom(change=None):
        raise RuntimeError("broken on purpose")
    ex._guarded(boom)()
    assert "explorer error: RuntimeError: broken on purpose" in ex.error.value


# ---- python -m reasonlib explore --------------------------------------------------------------
def test_explore_without_a_run_says_which_command_makes_one(tmp_path, capsys):
    from reasonlib.__main__ import main
    assert main(["explore", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no run at" in err and "make run" in err
    (tmp_path / "empty" / "seed-0").mkdir(parents=True)
    assert main(["explore", str(tmp_path / "empty")]) == 2
    assert "holds no failure analysis" in capsys.readouterr().err


def test_rerun_command_names_the_profile_seed_and_problem():
    from reasonlib.report import serve
    rec = _rec("SFT targeted", "mixed3", 12, 477, "495")
    cmd = serve.rerun_command("quick", 3, rec)
    assert cmd.startswith("cd notebooks && papermill 07_failure_analysis.ipynb /tmp/07_seed3.ipynb "
                          "-f ../params/quick.yaml -p seed 3")
    assert cmd.endswith("# SFT targeted, mixed3: 12+477")
    assert "-f" not in serve.rerun_command("not-a-profile", 0, rec)   # no such params file


def test_explorer_records_round_trip(tmp_path):
    from reasonlib.report import serve
    recs = [dict(_rec("sft", "mixed", 12, 3, "18"), held_out=True, greedy_ids=[49, 56])]
    p = serve.save_records(tmp_path / serve.RECORDS, recs)
    assert serve.load_records(p) == recs
    assert p.read_bytes() == serve.save_records(tmp_path / "again.json.gz", recs).read_bytes()  # no timestamp
