#!/usr/bin/env python3
"""Keeps the configuration tables of docs/ equal to what the binaries print.

Every process prints its configuration reference with `--config-doc` (generated from its config
table). In the docs, the table sits between `<!-- config-doc: NAME -->` and `<!-- /config-doc -->`
(NAME = the binary). `tools/config_docs.py --write` rewrites those blocks (`make docs-config`);
without --write it only checks and exits 1 naming every stale block (the test suite runs that).
"""
import argparse
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"(<!-- config-doc: ([a-z0-9-]+) -->\n)(.*?)(<!-- /config-doc -->)", re.S)


def reference(bindir, name):
    out = subprocess.run([os.path.join(bindir, name), "--config-doc"], capture_output=True,
                         text=True, timeout=10, check=True)
    return out.stdout.rstrip("\n") + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "bin"), help="directory of the binaries")
    ap.add_argument("--write", action="store_true", help="rewrite the blocks instead of checking")
    args = ap.parse_args()
    stale, seen = [], set()
    for path in sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)):
        text = open(path, encoding="utf-8").read()

        def fill(m):
            seen.add(m.group(2))
            want = reference(args.bin, m.group(2))
            if m.group(3) != want:
                stale.append(f"{os.path.relpath(path, ROOT)}: {m.group(2)}")
            return m.group(1) + want + m.group(4)

        new = BLOCK.sub(fill, text)
        if args.write and new != text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
    if not seen:
        print("config_docs: no <!-- config-doc: NAME --> block found", file=sys.stderr)
        return 1
    if stale and not args.write:
        print("config tables out of date (run `make docs-config`):\n  " + "\n  ".join(stale),
              file=sys.stderr)
        return 1
    print(f"config_docs: {len(seen)} tables {'written' if args.write else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
