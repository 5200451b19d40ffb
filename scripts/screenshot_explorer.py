"""Screenshot the failure explorer of a finished run (the README's picture, reports/quick/explorer.png), in headless Chromium.

    python scripts/screenshot_explorer.py runs/quick reports/quick/explorer.png \\
        --checkpoint "SFT targeted" --bucket mixed3

Serves the run with `python -m reasonlib explore`'s server, selects the filters given, and
saves the page (the network is refused: the page needs none). Needs Debian's chromium and
the test extras (voila, playwright); not used by the tests.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reasonlib.report import serve  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_root")
    ap.add_argument("png")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--bucket", default=None)
    ap.add_argument("--klass", default=None, help="an error class (default: all wrong answers)")
    ap.add_argument("--match", type=int, default=0, help="which matching problem to show")
    ap.add_argument("--width", type=int, default=1100)
    a = ap.parse_args(argv)
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        raise SystemExit("no chromium found: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    proc, url = serve.serve(a.run_root, log=Path(a.png).with_suffix(".voila.log"))
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=exe, headless=True,
                                   args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = b.new_page(viewport={"width": a.width, "height": 800})
            page.route("**/*", lambda r: r.continue_() if "127.0.0.1" in r.request.url else r.abort())
            page.goto(url)
            page.locator(".explorer-summary").wait_for(timeout=180_000)
            for cls, value in (("checkpoint", a.checkpoint), ("bucket", a.bucket), ("class", a.klass)):
                if value:
                    page.locator(f".explorer-{cls} select").select_option(label=value)
                    time.sleep(1.0)
            for _ in range(a.match):
                page.locator(".explorer-match .noUi-handle").first.focus()
                page.keyboard.press("ArrowRight")
                time.sleep(0.5)
            time.sleep(1.5)
            Path(a.png).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=a.png, full_page=True)
            b.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    print(a.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
