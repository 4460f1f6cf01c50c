#!/usr/bin/env python3
"""The test runner behind `make test` (docs/testing.md).

Runs, in order: the cmocka unit test binaries (build/<variant>/tests/test_*), then every
`test_*` function of tests/integration/test_*.py, tests/e2e/test_*.py, tests/security/test_*.py
(attacks as regression tests, docs/security.md), tests/chaos/test_*.py (the fault suite: a
short form, CHAOS=full for `make chaos`'s long one) and tests/compat/test_*.py (compatibility:
a short form, COMPAT=full for `make compat`'s long one), each in a fresh
harness context whose processes and files are cleaned up even when the test fails. A module
that sets BROKERS = ["mock", "embedded"] runs each of its tests once per broker (differential
testing of our Kafka implementation against librdkafka's mock cluster), except the tests marked
@harness.one_broker (broker-independent: browser tests, docs checks), which run once.

Then, unless --no-asan, the same again with the ASan+UBSan binaries (time-outs stretched), less
the tests marked release-only (module ASAN = False, @harness.release_only): docs/testing.md says
which and why.

Tests run in --jobs worker processes (default: twice the cores, as most of a test's time is
spent waiting; TEST_JOBS in the environment), each with its own blocks of the harness's ports
(harness.free_port) and its own PostgreSQL cluster. The unit of work is one test, or a whole
module when it shares processes between its tests (teardown_module), or every module with the
same SERIAL_GROUP (tests binding the product's fixed ports). The slowest units start first, from
the durations of the previous run (build/test-times.json).

The last lines are the time of each pass, then `N passed, N failed` (with `, N skipped` when
some were skipped). Select tests with --filter REGEX (make test TESTS=regex), matched against
names like `unit/test_buf:test_append_cap` or `integration/test_publisher:test_batch[mock]`.
"""
import argparse
import importlib.util
import json
import multiprocessing
import multiprocessing.util
import os
import re
import signal
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import harness  # noqa: E402

GROUPS = ("integration", "e2e", "security", "chaos", "compat")
TIMES_FILE = os.path.join(ROOT, "build", "test-times.json")
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


def run_unit_binary(path, base, flt, mult):
    """Runs one cmocka binary; returns its records [(name, outcome, detail)]."""
    out_records = []
    env = dict(os.environ, CMOCKA_MESSAGE_OUTPUT="stdout")
    env["TEST_DATA_DIR"] = os.path.join(ROOT, "tests", "data")
    try:
        p = subprocess.run([path], capture_output=True, text=True, timeout=120 * mult,
                           env=env, cwd=ROOT)
        out = p.stdout + p.stderr
        rc = p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        # A hang fails the run whatever the filter; the output names the test that hung.
        out_records.append((base + ":timeout", "failed",
                            f"no end after {120 * mult}s\n" + out[-2000:]))
        return out_records
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
        out_records.append((name, outcome, out if outcome == "failed" else ""))
    if seen == 0 and (not flt or re.search(flt, base)):
        # A binary that crashed before reporting, or reported nothing, is a failure.
        out_records.append((base, "failed" if rc != 0 or not flt else "skipped", out[-2000:]))
    elif rc != 0 and "FAILED" not in out:
        out_records.append((base + ":exit", "failed", f"exit code {rc}\n" + out[-2000:]))
    return out_records


def load_module(path):
    name = "t_" + re.sub(r"\W", "_", os.path.relpath(path, ROOT))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def module_tests(mod, asan):
    """[(function name, broker or None)] of a module, in the order they run."""
    out = []
    if asan and not getattr(mod, "ASAN", True):
        # A module with ASAN = False (a load or browser test whose C paths the other
        # modules already cover) runs in the first pass only, to keep make test short.
        return out
    mod_brokers = getattr(mod, "BROKERS", [None])
    for fn_name in sorted(n for n in dir(mod) if n.startswith("test_")):
        fn = getattr(mod, fn_name)
        if not callable(fn):
            continue
        if asan and not getattr(fn, "asan", True):
            continue
        brokers = getattr(fn, "brokers", mod_brokers) if mod_brokers != [None] else mod_brokers
        if asan and len(brokers) > 1:
            # Under sanitizers, one broker is enough: the differential run against both
            # brokers happens in the first pass, and the ASan pass must stay short. The
            # embedded broker, so that it runs sanitized too (and it answers faster than
            # librdkafka's mock, whose group joins and fetch waits cost seconds per test).
            brokers = ["embedded"] if "embedded" in brokers else brokers[:1]
        for broker in brokers:
            out.append((fn_name, broker))
    return out


def test_name(base, fn_name, broker):
    return f"{base}:{fn_name}" + (f"[{broker}]" if broker else "")


def collect(passes, flt, only):
    """The units of work of each pass: [(pass label, [unit])]; a unit is a dict with its key,
    its kind ("unit" or "py") and what to run."""
    out = []
    for label, bindir, builddir, mult in passes:
        units = []
        tdir = os.path.join(ROOT, builddir, "tests")
        if only in (None, "unit") and os.path.isdir(tdir):
            for exe in sorted(os.listdir(tdir)):
                path = os.path.join(tdir, exe)
                if exe.startswith("test_") and os.access(path, os.X_OK):
                    units.append({"key": f"{label}unit/{exe}", "kind": "unit", "path": path,
                                  "base": f"{label}unit/{exe}"})
        serial = {}
        for group in GROUPS if only != "unit" else ():
            if only and only != group:
                continue
            gdir = os.path.join(ROOT, "tests", group)
            if not os.path.isdir(gdir):
                continue
            for fname in sorted(os.listdir(gdir)):
                if not (fname.startswith("test_") and fname.endswith(".py")):
                    continue
                base = f"{label}{group}/{fname[:-3]}"
                path = os.path.join(gdir, fname)
                try:
                    mod = load_module(path)
                except Exception:
                    units.append({"key": base, "kind": "import_error", "base": base,
                                  "detail": traceback.format_exc()})
                    continue
                tests = [(f, b) for f, b in module_tests(mod, bool(label))
                         if not flt or re.search(flt, test_name(base, f, b))]
                if not tests:
                    continue
                item = {"path": path, "base": base, "tests": tests}
                if getattr(mod, "SERIAL_GROUP", None):
                    # Modules that must not run beside each other (the product's fixed ports)
                    # form one unit.
                    unit = serial.setdefault(mod.SERIAL_GROUP, {
                        "key": f"{label}serial:{mod.SERIAL_GROUP}", "kind": "py", "modules": []})
                    unit["modules"].append(item)
                    if len(unit["modules"]) == 1:
                        units.append(unit)
                elif callable(getattr(mod, "teardown_module", None)):
                    # Processes shared between the module's tests: one unit.
                    units.append({"key": base, "kind": "py", "modules": [item]})
                else:
                    for t in tests:
                        units.append({"key": test_name(base, *t), "kind": "py",
                                      "modules": [dict(item, tests=[t])]})
        out.append((label, bindir, mult, units))
    return out


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
    return (f"{name} ({dt:.1f}s)", outcome, detail)


def run_unit_of_work(task):
    """In a worker: runs one unit; returns (key, seconds, records)."""
    unit, bindir, mult, asan, flt = task
    harness.configure(bin_dir=os.path.join(ROOT, bindir), timeout_mult=mult, asan=asan)
    t0 = time.monotonic()
    records = []
    if unit["kind"] == "unit":
        records = run_unit_binary(unit["path"], unit["base"], flt, mult)
    elif unit["kind"] == "import_error":
        records = [(unit["base"] + ":import", "failed", unit["detail"])]
    else:
        for item in unit["modules"]:
            try:
                mod = load_module(item["path"])
            except Exception:
                records.append((item["base"] + ":import", "failed", traceback.format_exc()))
                continue
            for fn_name, broker in item["tests"]:
                records.append(run_one(test_name(item["base"], fn_name, broker),
                                       getattr(mod, fn_name), broker))
            # A module may share processes between its tests (started on first use, e.g. the
            # whole product in tests/e2e/test_product.py); teardown_module() stops them.
            teardown = getattr(mod, "teardown_module", None)
            if callable(teardown):
                try:
                    teardown()
                except Exception:
                    records.append((item["base"] + ":teardown_module", "failed",
                                    traceback.format_exc()))
    return unit["key"], time.monotonic() - t0, records


def _worker_stop(signum, frame):
    # Told to stop (the runner interrupted, or a Ctrl-C to the whole group): the running
    # test's processes, the module's shared ones and the PostgreSQL cluster go with the worker.
    # Once: a SIGTERM after the SIGINT must not cut the clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        harness.cleanup_all()
    finally:
        os._exit(128 + signum)


def worker_init():
    # Ports: blocks of its own (a worker never shares the parent's, should it hold any).
    harness.forget_ports()
    # Handlers, not SIG_IGN: the processes the tests start get the default dispositions back.
    signal.signal(signal.SIGTERM, _worker_stop)
    signal.signal(signal.SIGINT, _worker_stop)
    # The worker's shared resources (its PostgreSQL cluster) are stopped when it exits.
    multiprocessing.util.Finalize(None, harness.shutdown_shared, exitpriority=10)


def load_times():
    try:
        with open(TIMES_FILE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def estimate(unit, times):
    if unit["key"] in times:
        return times[unit["key"]]
    if unit["kind"] != "py":
        return 1.0
    # Unknown: a few seconds a test, more for a module that starts shared processes.
    return sum(3.0 * len(m["tests"]) for m in unit["modules"]) + 5.0 * (len(unit["modules"]) > 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="bin")
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--asan-bin", default="build/asan/bin")
    ap.add_argument("--asan-build", default="build/asan")
    ap.add_argument("--filter", default=None)
    ap.add_argument("--no-asan", action="store_true")
    ap.add_argument("--only", choices=["unit"] + list(GROUPS), default=None)
    ap.add_argument("--jobs", type=int,
                    default=int(os.environ.get("TEST_JOBS") or 2 * (os.cpu_count() or 1)))
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
    work = collect(passes, args.filter, args.only)
    times = load_times()
    new_times = dict(times)
    jobs = max(1, args.jobs)
    phases = []
    t_start = time.monotonic()
    mp = multiprocessing.get_context("fork")
    pool = mp.Pool(jobs, initializer=worker_init)
    try:
        for label, bindir, mult, units in work:
            t0 = time.monotonic()
            # Longest first, so that no long test starts last and runs alone.
            units = sorted(units, key=lambda u: -estimate(u, times))
            tasks = [(u, bindir, mult, bool(label), args.filter) for u in units]
            for key, secs, records in pool.imap_unordered(run_unit_of_work, tasks):
                new_times[key] = round(secs, 1)
                for name, outcome, detail in records:
                    record(name, outcome, detail)
            phases.append((label.rstrip(":") or "release", len(units), time.monotonic() - t0))
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    try:
        os.makedirs(os.path.dirname(TIMES_FILE), exist_ok=True)
        with open(TIMES_FILE + ".tmp", "w") as f:
            json.dump(new_times, f, indent=0, sort_keys=True)
        os.replace(TIMES_FILE + ".tmp", TIMES_FILE)
    except OSError:
        pass

    for name, detail in FAILURES:
        # The traceback comes first and must survive; the processes' logs after it are cut
        # from the front.
        if len(detail) > 8000:
            detail = detail[:3000] + "\n[...]\n" + detail[-5000:]
        print(f"\n===== FAILED {name}\n{detail}")
    # The names again, next to the summary: a log cut to its head and tail still says what failed.
    for name, _ in FAILURES:
        print(f"FAILED {name}")
    for phase, n, secs in phases:
        print(f"pass {phase}: {n} units of work in {secs:.0f}s ({jobs} workers)")
    print(f"tests: {time.monotonic() - t_start:.0f}s")
    if os.environ.get("MAKE_TEST_START"):
        # make test's build phases (the Makefile times them), so that its total comes before
        # the last line.
        total = int(time.time()) - int(os.environ["MAKE_TEST_START"])
        print(f"make test: {total}s in all ({os.environ.get('MAKE_TEST_BUILD', '')}, "
              f"tests {time.monotonic() - t_start:.0f}s)")
    summary = f"{RESULTS['passed']} passed, {RESULTS['failed']} failed"
    if RESULTS["skipped"]:
        summary += f", {RESULTS['skipped']} skipped"
    print(summary)
    total = RESULTS["passed"] + RESULTS["failed"]
    sys.exit(1 if RESULTS["failed"] or total == 0 else 0)


if __name__ == "__main__":
    main()
