"""`make` alone builds every program (README: "`make` alone does the same set-up and builds every
executable into `bin/`")."""
import os
import subprocess
import tempfile

import harness

ASAN = False


def programs(*tops):
    """The programs that prog.mk files under tops declare."""
    progs = []
    for top in tops:
        for dirpath, _dirs, files in os.walk(os.path.join(harness.ROOT, top)):
            if "prog.mk" in files:
                with open(os.path.join(dirpath, "prog.mk")) as f:
                    for line in f:
                        if line.startswith("PROGRAMS +="):
                            progs += line.split("+=", 1)[1].split()
    return progs


def test_make_alone_builds_every_program():
    # A dry run into an empty build folder lists the link line of every program that `make`
    # (no goal) would build; prog.mk files declare the programs.
    progs = programs("bus", "services", "tools", "notify")
    bench = programs("bench")  # built by `make bench` (and `make test`), not by `make`
    assert "bus-publisher" in progs and len(progs) > 5, progs
    assert bench, "no bench program found"
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["make", "-n", "--no-print-directory", f"BUILD={tmp}/build",
                              f"BINDIR={tmp}/bin"], cwd=harness.ROOT, capture_output=True,
                             text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for p in progs:
        assert f"-o {tmp}/bin/{p} " in out.stdout, f"`make` would not build {p}"
    for p in bench:
        assert f"-o {tmp}/bin/{p} " not in out.stdout, f"`make` would build the bench's {p}"
