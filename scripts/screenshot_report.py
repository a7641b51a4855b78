"""Render an evaluation's ``report.html`` in headless Chromium and save what a person sees.

Not a test dependency: a check by eye that the verdict is on the first screen and the plots
read well. Needs the Debian ``chromium`` package (``apt-get install -y chromium``)::

    python scripts/screenshot_report.py runs/example/report.html                 # first screen
    python scripts/screenshot_report.py runs/example/report.html --full -o page.png

The first screen is a 1366 x 768 window (a common laptop); ``--full`` renders a tall window
so the whole page fits.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FIRST_SCREEN = (1366, 768)


def chromium() -> str:
    """Path of the Chromium binary; exits with a message when it is not installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("error: no Chromium found; install it with `apt-get install -y chromium`.")


def screenshot(html: Path, png: Path, size: tuple[int, int], timeout: float = 120.0) -> None:
    """Render ``html`` in a fresh headless Chromium profile into ``png`` at window ``size``."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png.resolve()}",
            f"--window-size={size[0]},{size[1]}",
            html.resolve().as_uri(),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0 or not png.exists():
        sys.exit(f"error: Chromium failed ({done.returncode}):\n{done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the report.html to render")
    parser.add_argument("-o", "--out", type=Path, help="PNG to write (default: next to the HTML)")
    parser.add_argument("--full", action="store_true", help="render the whole page (tall window)")
    parser.add_argument("--height", type=int, default=6000, help="window height with --full")
    args = parser.parse_args()
    if not args.html.is_file():
        sys.exit(f"error: {args.html} is not a file.")
    suffix = "full" if args.full else "first_screen"
    out = args.out or args.html.with_name(f"{args.html.stem}_{suffix}.png")
    size = (FIRST_SCREEN[0], args.height) if args.full else FIRST_SCREEN
    screenshot(args.html, out, size)
    print(out)


if __name__ == "__main__":
    main()
