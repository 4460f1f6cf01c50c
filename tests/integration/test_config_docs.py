"""The configuration tables in docs/ are what the binaries print (`make docs-config`)."""
import os
import subprocess

import harness

ASAN = False


def test_config_tables_match_the_binaries():
    bindir = os.path.dirname(harness.bin_path("bus-publisher"))
    out = subprocess.run(["/usr/bin/python3", os.path.join(harness.ROOT, "tools", "config_docs.py"),
                          "--bin", bindir], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout
