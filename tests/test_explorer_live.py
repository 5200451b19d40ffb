"""07's explorer in a live kernel, driven the way a browser frontend drives it.

The headless tests (test_explorer.py) set widget values from Python. Here a real IPython
kernel runs the code cells of ``notebooks/07_failure_analysis.ipynb`` (papermill-style: the
parameters cell, then an injected cell with smoke overrides, then the rest), and the test
plays the frontend over the Jupyter messaging protocol:

* it keeps a replica of every widget model from the kernel's ``comm_open`` messages
  (target ``jupyter.widget``) and applies the ``update`` / ``echo_update`` comm messages
  the kernel publishes on iopub, as the ipywidgets manager of JupyterLab does;
* it changes the widgets by sending ``comm_msg`` ``{"method": "update", "state": ...}``
  on the shell channel (ipywidgets 8: a Dropdown syncs ``index``, an IntSlider ``value``);
* it checks the replica against the records the notebook collected, then against the
  kernel's own view (code executed in the kernel, and the ``jupyter.widget.control``
  ``request_states`` reply a frontend uses when it reconnects).
"""
from __future__ import annotations

import html
import json
import os
import queue
import re
import time
from pathlib import Path

import ipykernel  # noqa: F401  (a missing kernel or widgets package fails here, not skips)
import ipywidgets  # noqa: F401
import jupyter_client
import nbformat

from reasonlib.train import params

ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / "notebooks" / "07_failure_analysis.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# the smoke profile, with a smaller failure slice (5 problems per bucket, 2 samples each)
OVERRIDES = {"n_fail": 5, "fail_samples": 2}


class Frontend:
    """A minimal Jupyter frontend: runs code, sends comm messages, keeps widget replicas."""

    def __init__(self, kc):
        self.kc = kc
        self.iopub: list[dict] = []          # every iopub message seen, in order
        self.models: dict[str, dict] = {}    # comm_id -> replicated widget state

    def _apply(self, msg):
        t, c = msg["msg_type"], msg["content"]
        if t == "comm_open" and c.get("target_name") == "jupyter.widget":
            assert not c["data"].get("buffer_paths"), c["data"]
            self.models[c["comm_id"]] = dict(c["data"]["state"])
        elif t == "comm_msg" and c["comm_id"] in self.models:
            d = c["data"]
            if d.get("method") in ("update", "echo_update"):
                assert not d.get("buffer_paths"), d
                self.models[c["comm_id"]].update(d["state"])
        elif t == "comm_close":
            self.models.pop(c["comm_id"], None)

    def _until_idle(self, msg_id, timeout) -> list[dict]:
        """iopub messages up to the kernel's idle status for request ``msg_id``."""
        deadline = time.monotonic() + timeout
        got = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no idle status for {msg_id} after {timeout} s; saw "
                                   f"{[m['msg_type'] for m in got]}")
            try:
                m = self.kc.get_iopub_msg(timeout=left)
            except queue.Empty:
                continue
            self.iopub.append(m)
            self._apply(m)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            got.append(m)
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                return got

    def execute(self, code, timeout=120) -> list[dict]:
        msg_id = self.kc.execute(code, allow_stdin=False)
        msgs = self._until_idle(msg_id, timeout)
        errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
        assert not errors, "\n".join("\n".join(e["traceback"]) for e in errors)
        reply = self.kc.get_shell_msg(timeout=timeout)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "ok", reply["content"]
        return msgs

    def stdout(self, code) -> str:
        return "".join(m["content"]["text"] for m in self.execute(code)
                       if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")

    def send(self, msg_type, content, metadata=None, timeout=30) -> list[dict]:
        """A comm message on the shell channel, as a browser sends it; its iopub side effects."""
        msg = self.kc.session.msg(msg_type, content, metadata=metadata or {})
        self.kc.shell_channel.send(msg)
        msgs = self._until_idle(msg["header"]["msg_id"], timeout)
        bad = [m for m in msgs if m["msg_type"] == "error"
               or (m["msg_type"] == "stream" and m["content"]["name"] == "stderr")]
        assert not bad, [m["content"] for m in bad]
        return msgs

    def update(self, comm_id, state) -> dict[str, list[dict]]:
        """Frontend-side change of one widget; the kernel's comm messages, by comm_id."""
        msgs = self.send("comm_msg", {"comm_id": comm_id, "data": {
            "method": "update", "state": state, "buffer_paths": []}})
        out: dict[str, list[dict]] = {}
        for m in msgs:
            if m["msg_type"] == "comm_msg":
                out.setdefault(m["content"]["comm_id"], []).append(m["content"]["data"])
        return out


def _ref(s):
    assert s.startswith("IPY_MODEL_"), s
    return s[len("IPY_MODEL_"):]


def _n(summary):
    m = re.fullmatch(r"(\d+) matching problems", summary)
    assert m, summary
    return int(m.group(1))


def _matches(records, ck, bucket, klass):
    return [r for r in records if r["checkpoint"] == ck
            and (bucket == "(all)" or r["bucket"] == bucket)
            and (r["class"] != "correct" if klass == "(all wrong)" else r["class"] == klass)]


def _shows(page, rec):
    """The record HTML shows this record (checkpoint, bucket, whether training could see it,
    prompt, sum, class, the probabilities as numbers and as a strip, the rerun command)."""
    e = html.escape
    seen = "<span class='held-out'>held out</span>" if rec["held_out"] else \
        "<span class='seen'>seen in training</span>"
    return (f"<b>{e(rec['checkpoint'])}</b> · {e(rec['bucket'])} · {seen} · "
            f"<code>{rec['a']}+{rec['b']}=</code> (sum {rec['a'] + rec['b']})" in page
            and f"→ <b>{e(rec['class'])}</b>" in page and "per-token probability" in page
            and "<svg class=\"prob-strip\"" in page and f"{rec['a']}+{rec['b']}</code>" in page)


def test_07_explorer_in_live_kernel_driven_like_a_frontend(tmp_path):
    nb = nbformat.read(NB, 4)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    (pi,) = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    (xi,) = [i for i, c in enumerate(cells) if "explorer.Explorer(" in c.source]
    p = dict(params.load_profile("smoke"), run_dir=str(tmp_path / "run" / "seed-0"),
             artifacts_dir=str(tmp_path / "artifacts"), **OVERRIDES)
    injected = "\n".join(f"{k} = {v!r}" for k, v in p.items() if f"\n{k} = " in "\n" + cells[pi].source)
    assert "run_dir = " in injected and "n_fail = 5" in injected

    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_WIDGETS_ECHO"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    km = jupyter_client.KernelManager(kernel_name="python3")
    kernel_log = tmp_path / "kernel.log"
    with open(kernel_log, "w") as log:
        km.start_kernel(cwd=str(NB.parent), env=env, stdout=log, stderr=log)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        fe = Frontend(kc)
        # one intra-op thread, as the unit suite uses (conftest): the models are tiny
        fe.execute("import torch; torch.set_num_threads(1)")

        # ---- the notebook, papermill-style --------------------------------------------
        explorer_out = None
        for i, c in enumerate(cells):
            msgs = fe.execute(c.source)
            if i == pi:
                fe.execute(injected)
            if i == xi:
                explorer_out = msgs
        records = json.loads(fe.stdout(
            "import json\nprint(json.dumps([{k: r[k] for k in ('checkpoint', 'bucket', 'a', "
            "'b', 'class', 'held_out')} for r in records]))"))
        checkpoints = list(dict.fromkeys(r["checkpoint"] for r in records))
        assert checkpoints == ["SFT control", "SFT+RL control", "SFT targeted", "SFT+RL targeted"]
        assert len(records) == 4 * len(p["buckets"]) * OVERRIDES["n_fail"]

        # ---- what the kernel opened, and what the explorer cell displayed ---------------
        # (the training cell's tqdm bars are widgets too: HBox/HTML/FloatProgress models;
        # the explorer's own models are found through the displayed VBox's children)
        views = [m for m in explorer_out if m["msg_type"] in ("execute_result", "display_data")
                 and WIDGET_VIEW in m["content"]["data"]]
        assert len(views) == 1, [m["msg_type"] for m in explorer_out]
        view = views[0]["content"]["data"][WIDGET_VIEW]
        assert view["version_major"] == 2
        box = fe.models[view["model_id"]]
        assert box["_model_name"] == "VBoxModel"
        hbox_id, slider_id, summary_id, html_id, error_id = map(_ref, box["children"])
        ck_id, bk_id, kl_id = map(_ref, fe.models[hbox_id]["children"])
        M = fe.models
        assert [M[k]["_model_name"] for k in (ck_id, bk_id, kl_id, slider_id, summary_id, html_id, error_id)] \
            == ["DropdownModel"] * 3 + ["IntSliderModel", "HTMLModel", "HTMLModel", "HTMLModel"]
        assert [M[k]["description"] for k in (ck_id, bk_id, kl_id, slider_id)] \
            == ["checkpoint", "bucket", "class", "match"]
        # all six came from comm_open messages of the explorer cell
        opened = {m["content"]["comm_id"] for m in explorer_out if m["msg_type"] == "comm_open"
                  and m["content"]["target_name"] == "jupyter.widget"}
        assert {view["model_id"], hbox_id, ck_id, bk_id, kl_id, slider_id, summary_id,
                html_id} <= opened

        def labels(k):
            return M[k]["_options_labels"]

        def state():
            return (labels(ck_id)[M[ck_id]["index"]], labels(bk_id)[M[bk_id]["index"]],
                    labels(kl_id)[M[kl_id]["index"]])

        def check_view():
            """The replica shows what the records say for the selected filters."""
            want = _matches(records, *state())
            assert _n(M[summary_id]["value"]) == len(want)
            assert M[slider_id]["max"] == max(0, len(want) - 1)
            if want:
                assert _shows(M[html_id]["value"], want[M[slider_id]["value"]])
            else:
                assert M[html_id]["value"] == "<i>no problem matches these filters</i>"
            assert M[error_id]["value"] == ""   # no callback raised
            return want

        assert labels(ck_id) == checkpoints
        assert labels(bk_id) == ["(all)", *p["buckets"]]
        assert state() == ("SFT control", "(all)", "(all wrong)") and M[slider_id]["value"] == 0
        check_view()

        def step(comm_id, new):
            before = {k: dict(M[k]) for k in (summary_id, html_id, slider_id)}
            sent = fe.update(comm_id, new)
            # the kernel echoes the frontend's change (ipywidgets 8) ...
            assert sent[comm_id][0] == {"method": "echo_update", "state": new, "buffer_paths": []}
            # ... and pushes every derived change it made, and nothing unchanged
            for k in (summary_id, html_id, slider_id):
                pushed = {n for d in sent.get(k, []) if d["method"] == "update" for n in d["state"]}
                changed = {n for n in M[k] if M[k][n] != before[k][n]}
                assert changed <= pushed | set(new if k == comm_id else ())
            return sent, check_view()

        # 1. checkpoint dropdown -> the RL checkpoint
        n_before = _n(M[summary_id]["value"])
        sent, want = step(ck_id, {"index": checkpoints.index("SFT+RL targeted")})
        assert state()[0] == "SFT+RL targeted" and html_id in sent
        assert (summary_id in sent) == (len(want) != n_before)
        # 2. bucket dropdown -> a bucket with at least two wrong answers of that checkpoint
        bucket = next(b for b in p["buckets"] if len(_matches(records, "SFT+RL targeted", b,
                                                              "(all wrong)")) >= 2)
        n_before = len(want)
        sent, want = step(bk_id, {"index": labels(bk_id).index(bucket)})
        assert state()[1] == bucket and len(want) >= 2
        assert (summary_id in sent) == (len(want) != n_before)
        assert [d["state"] for d in sent.get(slider_id, [])] == \
            ([{"max": len(want) - 1}] if len(want) != n_before else [])
        # 3. slider -> the second match: only the record view changes
        sent, _ = step(slider_id, {"value": 1})
        assert set(sent) == {slider_id, html_id} and len(sent[slider_id]) == 1
        assert _shows(M[html_id]["value"], want[1]) and not _shows(M[html_id]["value"], want[0])

        # the kernel's own view after the frontend's changes
        got = json.loads(fe.stdout(
            "_r = ex.matches()[ex.index.value]\n"
            "print(json.dumps([ex.checkpoint.value, ex.bucket.value, ex.klass.value, "
            "ex.index.value, len(ex.matches()), ex.html.value == explorer.render_record(_r, "
            "dists=explorer.answer_token_dists(models[_r['checkpoint']], _r['a'], _r['b'], "
            "_r['greedy_ids']), fmt=P.fmt, command=ex.command(_r))]))"))
        assert got == ["SFT+RL targeted", bucket, "(all wrong)", 1, len(want), True]

        # 4. class dropdown -> a class with no match: the kernel moves the slider back to 0
        empty = next(k for k in labels(kl_id)[1:]
                     if not _matches(records, "SFT+RL targeted", bucket, k))
        sent, want = step(kl_id, {"index": labels(kl_id).index(empty)})
        assert want == [] and M[slider_id]["value"] == 0 and M[slider_id]["max"] == 0
        assert M[summary_id]["value"] == "0 matching problems"

        # ---- a reconnecting frontend asks for every state: the replica agrees ------------
        ctl = "control-" + kc.session.session
        fe.send("comm_open", {"comm_id": ctl, "target_name": "jupyter.widget.control",
                              "data": {}}, metadata={"version": "1.0.0"})
        reply = [m["content"]["data"] for m in fe.send(
            "comm_msg", {"comm_id": ctl, "data": {"method": "request_states"}})
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == ctl]
        assert len(reply) == 1 and reply[0]["method"] == "update_states"
        states = reply[0]["states"]
        for k in (view["model_id"], hbox_id, ck_id, bk_id, kl_id, slider_id, summary_id, html_id):
            assert states[k]["state"] == M[k], k

        # nothing went wrong anywhere: no error on iopub, no traceback in the kernel's log
        assert not [m for m in fe.iopub if m["msg_type"] == "error"]
        log_text = kernel_log.read_text()
        assert "Traceback" not in log_text and "Exception in" not in log_text, log_text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
