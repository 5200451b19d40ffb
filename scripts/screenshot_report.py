"""Screenshot a report page in headless Chromium, with the network off (a visual check).

    python scripts/screenshot_report.py runs/quick/report/index.html /tmp/index.png
    python scripts/screenshot_report.py runs/quick/report/seed-0/05_kl_rl.html /tmp/05.png --height 4000

Needs a Chromium binary (Debian: ``apt-get install -y chromium``); not used by the tests.
Background networking, component updates and sync are disabled and the proxy points
nowhere, so a page that needs the network shows it in the picture instead of hiding it.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1600,
               chromium: str | None = None, timeout: float = 120) -> Path:
    exe = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        raise SystemExit("no chromium found: apt-get install -y chromium (or pass --chromium)")
    page, png = Path(page).resolve(), Path(png).resolve()
    if not page.is_file():
        raise SystemExit(f"{page} does not exist")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
               f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={width},{height}", "--hide-scrollbars", page.as_uri()]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 or not png.is_file():
        raise SystemExit(f"chromium failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return png


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("page", type=Path, help="an HTML file of the report (e.g. report/index.html)")
    ap.add_argument("png", type=Path, help="where to write the screenshot")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1600)
    ap.add_argument("--chromium", default=None, help="path of the chromium binary")
    a = ap.parse_args(argv)
    print(screenshot(a.page, a.png, a.width, a.height, a.chromium))
    return 0


if __name__ == "__main__":
    sys.exit(main())
