"""Runs a browser test script (tests/browser/NAME.mjs) under node against processes the python
test has started. The script gets its addresses and tokens in the environment and exits 0 when
every check passed. Screenshots go to var/screenshots/ (git-ignored); a few are copied by hand
into docs/img/ for the README.
"""
import os
import shutil
import subprocess

import harness

BROWSER_DIR = os.path.join(harness.ROOT, "tests", "browser")
SCREENSHOT_DIR = os.path.join(harness.ROOT, "var", "screenshots")


def available():
    """Why the browser tests cannot run here, or None when they can."""
    if not shutil.which("node"):
        return "node is not installed (make deps)"
    if not os.path.exists(os.environ.get("CHROMIUM", "/usr/bin/chromium")):
        return "chromium is not installed (make deps)"
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        return "playwright-core is not installed (make deps)"
    return None


def run(script, env, timeout=120.0):
    """Runs tests/browser/SCRIPT.mjs with ENV added; raises AssertionError with its output when it
    fails."""
    why = available()
    if why:
        raise AssertionError("browser test cannot run: " + why)
    full = dict(os.environ)
    full.update({k: str(v) for k, v in env.items()})
    full.setdefault("SCREENSHOT_DIR", SCREENSHOT_DIR)
    full.setdefault("BROWSER_TIMEOUT_MS", str(int(15000 * harness.timeout_mult())))
    p = subprocess.run(["node", os.path.join(BROWSER_DIR, script + ".mjs")], env=full,
                       capture_output=True, text=True, timeout=timeout * harness.timeout_mult())
    if p.returncode != 0:
        raise AssertionError("browser test %s failed (exit %d):\n%s%s" %
                             (script, p.returncode, p.stdout[-4000:], p.stderr[-4000:]))
    return p.stdout
