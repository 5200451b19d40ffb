"""The failure explorer in a real browser: `python -m reasonlib explore` serves a finished run
with Voilà on localhost, headless Chromium (Debian's package, driven by Playwright through its
executable path: no browser download) opens it, and the test clicks through it as a user
would, asserting what the page shows after every action.

It fails when a widget does not render or is missing from the layout, when a callback raises
in the kernel (the explorer shows the error in the page and the server logs it), when the page
asks for anything but localhost, or when the console shows an error that is not on the short,
named allow-list below. The final state is saved as runs/test-artifacts/explorer.png."""
from __future__ import annotations

import re
import shutil
import time
import urllib.request
from pathlib import Path

import papermill as pm
import pytest

from reasonlib.report import serve
from reasonlib.core import failures
from reasonlib.train import params

pytest.importorskip("voila")
sync_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium: install Debian's chromium (`apt-get install -y chromium`; "
                             "`make test` does it when it runs as root)")
ARTIFACT = ROOT / "runs" / "test-artifacts" / "explorer.png"
# Console messages a working page may show, each with why it is harmless. Empty today: the
# page must load nothing from the network and log no error.
ALLOWED_CONSOLE = {}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished smoke run of 07 (it trains the SFT and RL models it needs) in runs/smoke/."""
    base = tmp_path_factory.mktemp("explore")
    root = base / "runs" / "smoke"
    p = dict(params.load_profile("smoke"), run_dir=str(root / "seed-0"),
             artifacts_dir=str(base / "runs" / "artifacts"), n_fail=12, fail_samples=2)
    nb = ROOT / "notebooks" / "07_failure_analysis.ipynb"
    declared = pm.inspect_notebook(str(nb))
    pm.execute_notebook(str(nb), str(base / "07.ipynb"), parameters={k: v for k, v in p.items() if k in declared},
                        cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    recs = serve.load_records(root / "seed-0" / serve.NOTEBOOK / serve.RECORDS)
    return root, recs


def _count(recs, ck, bucket="(all)", klass="(all wrong)"):
    return sum(r["checkpoint"] == ck and (bucket == "(all)" or r["bucket"] == bucket)
               and (r["class"] != "correct" if klass == "(all wrong)" else r["class"] == klass)
               for r in recs)


def drive(url: str, recs: list[dict], log: Path, screenshot: Path | None = None) -> list[str]:
    """Click through the explorer at ``url``; return every problem seen (empty: it works)."""
    problems, console, remote = [], [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1300, "height": 1100})
        page.on("console", lambda m: console.append((m.type, m.text)))
        page.on("pageerror", lambda e: console.append(("pageerror", str(e))))

        def route(r):   # the page may only talk to this server: anything else is refused
            if re.match(r"^(https?|wss?)://127\.0\.0\.1:\d+/", r.request.url) or r.request.url.startswith("data:"):
                r.continue_()
            else:
                remote.append(r.request.url)
                r.abort()
        page.route("**/*", route)
        try:
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            summary = page.locator(".explorer-summary")
            summary.wait_for(timeout=180_000)

            def shows(text, what):
                try:
                    page.wait_for_function(
                        "([sel, t]) => { const e = document.querySelector(sel); return e && e.innerText.includes(t); }",
                        arg=[".explorer-summary", text] if what == "summary" else [".explorer-record", text],
                        timeout=20_000)
                    return True
                except sync_api.Error:
                    problems.append(f"after {what}: expected {text!r}, page shows "
                                    f"{page.locator('.explorer-' + ('summary' if what == 'summary' else 'record')).inner_text()[:200]!r}")
                    return False

            for name in ("checkpoint", "bucket", "class", "match", "summary", "record"):
                if page.locator(f".explorer-{name}").count() != 1:
                    problems.append(f"the {name} widget is missing from the page")
            cks = list(dict.fromkeys(r["checkpoint"] for r in recs))
            shows(f"{_count(recs, cks[0])} matching problems", "summary")
            for ck in cks[1:] + cks[:1]:        # every checkpoint, ending on the first
                page.locator(".explorer-checkpoint select").select_option(label=ck)
                shows(f"{_count(recs, ck)} matching problems", "summary")
            ck = cks[0]
            bucket = max({r["bucket"] for r in recs}, key=lambda b: _count(recs, ck, b))
            page.locator(".explorer-bucket select").select_option(label=bucket)
            n = _count(recs, ck, bucket)
            shows(f"{n} matching problems", "summary")
            want = [r for r in recs if r["checkpoint"] == ck and r["bucket"] == bucket and r["class"] != "correct"]
            if want:
                shows(f"{want[0]['a']}+{want[0]['b']}=", "record")
                if page.locator(".explorer-record svg.prob-strip rect").count() < 1:
                    problems.append("the record shows no probability strip")
                if "copy the command" not in page.locator(".explorer-record").inner_text():
                    problems.append("the record shows no rerun command")
            if len(want) > 1 and page.locator(".explorer-match").count():   # move the slider one step
                page.locator(".explorer-match .noUi-handle").first.focus()
                page.keyboard.press("ArrowRight")
                shows(f"{want[1]['a']}+{want[1]['b']}=", "record")
            empty = next(c for c in failures.ALL if _count(recs, ck, bucket, c) == 0)
            page.locator(".explorer-class select").select_option(label=empty)
            shows("0 matching problems", "summary")
            shows("no problem matches these filters", "record")
            err = page.locator(".explorer-error").inner_text() if page.locator(".explorer-error").count() else ""
            if err.strip():
                problems.append(f"a callback raised in the kernel: {err.strip()[:300]}")
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
        except sync_api.Error as e:
            problems.append(f"the page did not work: {str(e).splitlines()[0][:300]}")
        finally:
            browser.close()
    problems += [f"the page asked the network for {u}" for u in remote]
    problems += [f"console {t}: {m[:200]}" for t, m in console if t in ("error", "pageerror")
                 and not any(re.search(rx, m) for rx in ALLOWED_CONSOLE)]
    server = log.read_text() if log.is_file() else ""
    if "Traceback" in server:
        problems.append("the server logged a traceback: " + server[server.index("Traceback"):][:400])
    return problems


def _serve_and_drive(run, tmp_path, fault=None, screenshot=None):
    root, recs = run
    log = tmp_path / "voila.log"
    proc, url = serve.serve(root, artifacts_root=root.parent / "artifacts", fault=fault, log=log)
    try:
        deadline = time.time() + 60      # the server answers before the page is driven
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail(f"voila did not start: {log.read_text()[-2000:] if log.is_file() else ''}")
                time.sleep(0.5)
        return drive(url, recs, log, screenshot)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except Exception:
            proc.kill()


def test_explorer_works_in_a_real_browser(run, tmp_path):
    problems = _serve_and_drive(run, tmp_path, screenshot=ARTIFACT)
    assert problems == [], "\n".join(problems)
    assert ARTIFACT.is_file() and ARTIFACT.stat().st_size > 10_000


def test_the_browser_test_catches_a_broken_callback(run, tmp_path):
    problems = _serve_and_drive(run, tmp_path, fault="callback")
    assert any("a callback raised" in p and "deliberately broken" in p for p in problems), problems


def test_the_browser_test_catches_a_missing_widget(run, tmp_path):
    problems = _serve_and_drive(run, tmp_path, fault="layout")
    assert any("match widget is missing" in p for p in problems), problems
