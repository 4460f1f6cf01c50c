#!/usr/bin/env python3
"""The test runner behind `make test`.

Runs, in order: the cmocka unit test binaries (build/<variant>/tests/test_*), then every
`test_*` function of tests/integration/test_*.py, tests/e2e/test_*.py, tests/security/test_*.py
(attacks as regression tests, docs/security.md), tests/chaos/test_*.py (the fault suite: a
short form, CHAOS=full for `make chaos`'s long one) and tests/compat/test_*.py (third-party Kafka
clients against the broker: a short form, COMPAT=full for `make compat`), each in a fresh
harness context whose processes and files are cleaned up even when the test fails. A module
that sets BROKERS = ["mock", "embedded"] runs each of its tests once per broker (differential
testing of our Kafka implementation against librdkafka's mock cluster).

Then, unless --no-asan, the same again with the ASan+UBSan binaries (time-outs stretched).

The last line is `N passed, N failed` (with `, N skipped` when some were skipped).
Select tests with --filter REGEX (make test TESTS=regex), matched against names like
`unit/test_buf:test_append_cap` or `integration/test_publisher:test_batch[mock]`.
"""
import argparse
import importlib.util
import os
import re
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import harness  # noqa: E402

RESULTS = {"passed": 0, "failed": 0, "skipped": 0}
FAILURES = []


def record(name, outcome, detail=""):
    RESULTS[outcome] += 1
    tag = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[outcome]
    line = f"{tag} {name}"
    if detail and outcome != "passed":
        line += f"  ({detail.strip().splitlines()[-1][:200] if detail.strip() else ''})"
    print(line, flush=True)
    if outcome == "failed":
        FAILURES.append((name, detail))


# One line per test ("[       OK ] test_x"); cmocka repeats failed and skipped tests in its
# summary ("listed below:"), so each name counts once, at its first line. ERROR = crash/setup.
CMOCKA_RE = re.compile(r"^\[\s*(OK|FAILED|SKIPPED|ERROR)\s*\]\s+(\S+)\s*$")


def run_unit(build_dir, flt, label, mult):
    tdir = os.path.join(build_dir, "tests")
    if not os.path.isdir(tdir):
        return
    for exe in sorted(os.listdir(tdir)):
        path = os.path.join(tdir, exe)
        if not exe.startswith("test_") or not os.access(path, os.X_OK):
            continue
        base = f"{label}unit/{exe}"
        env = dict(os.environ, CMOCKA_MESSAGE_OUTPUT="stdout")
        env["TEST_DATA_DIR"] = os.path.join(ROOT, "tests", "data")
        try:
            p = subprocess.run([path], capture_output=True, text=True, timeout=120 * mult,
                               env=env, cwd=ROOT)
            out = p.stdout + p.stderr
            rc = p.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = (e.stdout or b"").decode(errors="replace") + "\ntimeout", -1
        seen = 0
        counted = set()
        for line in out.splitlines():
            m = CMOCKA_RE.match(line.strip())
            if not m or m.group(2) in ("test(s).", "test(s)", "---") or m.group(2) in counted:
                continue
            counted.add(m.group(2))
            name = f"{base}:{m.group(2)}"
            if flt and not re.search(flt, name):
                continue
            seen += 1
            outcome = {"OK": "passed", "FAILED": "failed", "SKIPPED": "skipped",
                       "ERROR": "failed"}[m.group(1)]
            record(name, outcome, out if outcome == "failed" else "")
        if seen == 0 and (not flt or re.search(flt, base)):
            # A binary that crashed before reporting, or reported nothing, is a failure.
            record(base, "failed" if rc != 0 or not flt else "skipped", out[-2000:])
        elif rc != 0 and "FAILED" not in out:
            record(base + ":exit", "failed", f"exit code {rc}\n" + out[-2000:])


def load_module(path):
    name = "t_" + re.sub(r"\W", "_", os.path.relpath(path, ROOT))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_python(flt, label, only):
    for group in ("integration", "e2e", "security", "chaos", "compat"):
        if only and only != group:
            continue
        gdir = os.path.join(ROOT, "tests", group)
        if not os.path.isdir(gdir):
            continue
        for fname in sorted(os.listdir(gdir)):
            if not (fname.startswith("test_") and fname.endswith(".py")):
                continue
            base = f"{label}{group}/{fname[:-3]}"
            try:
                mod = load_module(os.path.join(gdir, fname))
            except Exception:
                record(base + ":import", "failed", traceback.format_exc())
                continue
            if label and not getattr(mod, "ASAN", True):
                # A module with ASAN = False (a load or browser test whose C paths the other
                # modules already cover) runs in the first pass only, to keep make test short.
                continue
            brokers = getattr(mod, "BROKERS", [None])
            if label and len(brokers) > 1:
                # Under sanitizers, one broker is enough: the differential run against both
                # brokers happens in the first pass, and the ASan pass must stay short. The
                # embedded broker, so that it runs sanitized too (and it answers faster than
                # librdkafka's mock, whose group joins and fetch waits cost seconds per test).
                brokers = ["embedded"] if "embedded" in brokers else brokers[:1]
            for fn_name in sorted(n for n in dir(mod) if n.startswith("test_")):
                fn = getattr(mod, fn_name)
                if not callable(fn):
                    continue
                for broker in brokers:
                    name = f"{base}:{fn_name}" + (f"[{broker}]" if broker else "")
                    if flt and not re.search(flt, name):
                        continue
                    run_one(name, fn, broker)
            # A module may share processes between its tests (started on first use, e.g. the
            # whole product in tests/e2e/test_product.py); teardown_module() stops them.
            teardown = getattr(mod, "teardown_module", None)
            if callable(teardown):
                try:
                    teardown()
                except Exception:
                    record(base + ":teardown_module", "failed", traceback.format_exc())


def run_one(name, fn, broker):
    ctx = harness.Context(name, broker=broker)
    t0 = time.monotonic()
    try:
        harness.set_context(ctx)
        fn()
        outcome, detail = "passed", ""
    except harness.Skip as e:
        outcome, detail = "skipped", str(e)
    except BaseException:
        outcome, detail = "failed", traceback.format_exc() + ctx.log_tail()
    finally:
        try:
            ctx.cleanup()
        except Exception:
            if outcome == "passed":
                outcome, detail = "failed", "cleanup: " + traceback.format_exc()
        harness.set_context(None)
    dt = time.monotonic() - t0
    record(f"{name} ({dt:.1f}s)", outcome, detail)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="bin")
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--asan-bin", default="build/asan/bin")
    ap.add_argument("--asan-build", default="build/asan")
    ap.add_argument("--filter", default=None)
    ap.add_argument("--no-asan", action="store_true")
    ap.add_argument("--only", choices=["unit", "integration", "e2e", "security", "chaos", "compat"],
                    default=None)
    args = ap.parse_args()
    os.chdir(ROOT)
    # The repo's bus config signs every route with ${BUS_SIGNING_SECRET}: tests run with a
    # test secret unless the caller gives one.
    os.environ.setdefault("BUS_SIGNING_SECRET", "test-signing-secret")
    # Everything the tests start (processes, busctl, mktoken) runs in development mode
    # (docs/security.md); tests/security starts processes in production on purpose.
    os.environ.setdefault("BUS_ENV", "development")

    passes = [("", args.bin, args.build, 1)]
    if not args.no_asan:
        passes.append(("asan:", args.asan_bin, args.asan_build, 3))
    try:
        for label, bindir, builddir, mult in passes:
            harness.configure(bin_dir=os.path.join(ROOT, bindir), timeout_mult=mult,
                              asan=bool(label))
            if args.only in (None, "unit"):
                run_unit(os.path.join(ROOT, builddir), args.filter, label, mult)
            if args.only != "unit":
                run_python(args.filter, label, args.only)
    finally:
        harness.shutdown_shared()

    for name, detail in FAILURES:
        # The traceback comes first and must survive; the processes' logs after it are cut
        # from the front.
        if len(detail) > 8000:
            detail = detail[:3000] + "\n[...]\n" + detail[-5000:]
        print(f"\n===== FAILED {name}\n{detail}")
    # The names again, next to the summary: a log cut to its head and tail still says what failed.
    for name, _ in FAILURES:
        print(f"FAILED {name}")
    summary = f"{RESULTS['passed']} passed, {RESULTS['failed']} failed"
    if RESULTS["skipped"]:
        summary += f", {RESULTS['skipped']} skipped"
    print(summary)
    total = RESULTS["passed"] + RESULTS["failed"]
    sys.exit(1 if RESULTS["failed"] or total == 0 else 0)


if __name__ == "__main__":
    main()
