#!/usr/bin/env python3
"""make compdb: compile_commands.json at the root for clangd, clang-tidy and editors.

Asks make for every compile command it would run from scratch (`make -n -B`, nothing is built)
and writes one entry per C file, so the database always matches the Makefile's real flags."""
import json
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    out = subprocess.run(["make", "-n", "-B", "--no-print-directory", "build", "bench-build"],
                         cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        return 1
    entries, seen = [], set()
    for line in out.stdout.splitlines():
        try:
            argv = shlex.split(line)
        except ValueError:
            continue
        if not argv or argv[0] not in ("cc", "gcc", "clang"):
            continue
        sources = [a for a in argv if a.endswith(".c")]
        if len(sources) != 1 or sources[0] in seen:
            continue
        seen.add(sources[0])
        entries.append({"directory": ROOT, "file": os.path.join(ROOT, sources[0]),
                        "arguments": argv})
    with open(os.path.join(ROOT, "compile_commands.json"), "w") as f:
        json.dump(entries, f, indent=1)
    print(f"compile_commands.json: {len(entries)} files")
    return 0 if entries else 1


if __name__ == "__main__":
    sys.exit(main())
