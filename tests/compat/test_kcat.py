"""kcat (Debian, installed by make deps) against bus-broker: the checks declared in
tests/compat/compat.py, run as kcat command lines (with SASL/SCRAM, as a user would)."""
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from compat import kcat_sasl, kill_restart_check, run_client  # noqa: E402

ASAN = False  # the broker's C paths run sanitized in tests/integration; keep make test short


def _kcat(env, args, input_bytes=None, mech="SCRAM-SHA-256", timeout=20):
    if not shutil.which("kcat"):
        raise harness.Skip("kcat not installed (make deps)")
    return harness.kcat(["-b", env["broker"].bootstrap] + kcat_sasl(mech) + list(args),
                        input_bytes=input_bytes, timeout=timeout)


def _produce(env, topic, lines, *extra):
    """Idempotent, acks=all, gzip, key:value lines; kcat exits non-zero on a failed delivery."""
    _kcat(env, ["-P", "-t", topic, "-K:", "-z", "gzip", "-X", "enable.idempotence=true",
                "-X", "acks=all"] + list(extra), input_bytes="".join(l + "\n" for l in lines)
          .encode())


def _consume(env, topic, n=None, *extra):
    """Every record of topic (or the first n) as (partition, offset, key, headers, value,
    timestamp) tuples, read from the beginning."""
    args = ["-C", "-t", topic, "-e", "-q", "-f", "%p\t%o\t%k\t%h\t%T\t%s\n"]
    args += list(extra) or ["-o", "beginning"]
    if n is not None:
        args += ["-c", str(n)]
    out = _kcat(env, args).decode().splitlines()
    recs = []
    for line in out:
        p, o, k, h, ts, v = line.split("\t")
        recs.append((int(p), int(o), k, h, v, int(ts)))
    return recs


def check_sasl(env):
    out = _kcat(env, ["-L"], mech="SCRAM-SHA-512").decode()
    assert "1 brokers:" in out, out
    p = subprocess.run(["kcat", "-b", env["broker"].bootstrap, "-L", "-m", "1"] +
                       kcat_sasl()[:-1] + ["sasl.password=wrong"], capture_output=True,
                       timeout=30)
    assert p.returncode != 0 and b"Authentication failed" in p.stderr, p.stderr[-500:]


def check_produce(env):
    lines = [f"k{i % 7}:v{i}" for i in range(30)]
    _produce(env, "kc-produce", lines[:10], "-H", "h=x")
    _produce(env, "kc-produce", lines[10:], "-H", "h=x")
    recs = _consume(env, "kc-produce", 30)
    assert sorted(f"{k}:{v}" for _, _, k, _, v, _ in recs) == sorted(lines), recs
    assert all(h == "h=x" for _, _, _, h, _, _ in recs), recs
    assert len({(p, o) for p, o, *_ in recs}) == 30


def _group(env, topic, group, n):
    """A balanced consumer (-G) reading n records, committing them as it exits."""
    args = ["-G", group, topic, "-X", "auto.offset.reset=earliest", "-c", str(n), "-e", "-q",
            "-f", "%s\n"]
    return _kcat(env, args).decode().splitlines()


def check_group_resume(env):
    _produce(env, "kc-resume", [f"k{i}:a{i}" for i in range(20)])
    assert sorted(_group(env, "kc-resume", "g-resume", 20)) == sorted(f"a{i}" for i in range(20))
    _produce(env, "kc-resume", [f"k{i}:b{i}" for i in range(10)])
    second = _group(env, "kc-resume", "g-resume", 10)
    assert sorted(second) == sorted(f"b{i}" for i in range(10)), second


def check_seek(env):
    _produce(env, "kc-seek", [f"k:s{i}" for i in range(10)])  # one key: one partition
    p = _consume(env, "kc-seek", 1)[0][0]
    recs = _consume(env, "kc-seek", 3, "-p", str(p), "-o", "7")
    assert [(o, v) for _, o, _, _, v, _ in recs] == [(7, "s7"), (8, "s8"), (9, "s9")], recs


def check_offsets_by_time(env):
    # kcat cannot set a record's timestamp: two batches produced at different times.
    _produce(env, "kc-time", [f"k:a{i}" for i in range(3)])
    t_a = _consume(env, "kc-time", 1)[0][5]
    harness.wait_for(lambda: time.time() * 1000 > t_a + 2, 5, what="the clock to move on")
    _produce(env, "kc-time", [f"k:b{i}" for i in range(3)])
    recs = _consume(env, "kc-time", 6)
    p, t_b = recs[0][0], recs[3][5]
    assert t_b > t_a, recs
    got = _consume(env, "kc-time", 3, "-p", str(p), "-o", f"s@{t_b}")
    assert [v for *_, v, _ in got] == ["b0", "b1", "b2"], got
    got = _consume(env, "kc-time", 1, "-p", str(p), "-o", f"s@{t_a}")
    assert got[0][1] == 0, got


def check_offsets_by_time_exact(env):
    # kcat -Q prints "<topic> [<partition>] offset <n>" as the broker answers it: the record's
    # own timestamp answers its offset, past the last record's timestamp Kafka answers -1.
    _produce(env, "kc-exact", ["k:x"])
    p, o, _, _, _, ts = _consume(env, "kc-exact", 1)[0]
    out = _kcat(env, ["-Q", "-t", f"kc-exact:{p}:{ts}"], timeout=10).decode()
    assert f"kc-exact [{p}] offset {o}\n" in out, out
    out = _kcat(env, ["-Q", "-t", f"kc-exact:{p}:{ts + 3600000}"], timeout=10).decode()
    assert f"kc-exact [{p}] offset -1\n" in out, out


def _reader(proc, lines):
    for raw in proc.stdout:
        lines.append(raw.decode().rstrip("\n"))


def check_rebalance(env):
    if not shutil.which("kcat"):
        raise harness.Skip("kcat not installed (make deps)")
    topic = "kc-two"
    _kcat(env, ["-P", "-t", topic, "-p", "3"], input_bytes=b"first\n")  # auto-created: 4
    members, outs, errs = [], [[], []], [[], []]
    try:
        for i in range(2):
            argv = ["kcat", "-b", env["broker"].bootstrap] + kcat_sasl() + [
                "-G", "g-two", topic, "-u", "-X", "auto.offset.reset=latest",
                "-X", "session.timeout.ms=6000", "-f", "%p %o %s\n"]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            members.append(proc)
            threading.Thread(target=_reader, args=(proc, outs[i]), daemon=True).start()
            err_proc = type("E", (), {"stdout": proc.stderr})
            threading.Thread(target=_reader, args=(err_proc, errs[i]), daemon=True).start()
            if i == 0:
                harness.wait_for(lambda: any("assigned:" in e and e.count(f"{topic} [") == 4
                                             for e in errs[0]), 20, what="4 partitions for one")
        # kcat prints "% Group g-two rebalanced (memberid ...): assigned: topic [p], ...".
        def two_and_two():
            last = [[e for e in errs[i] if "assigned:" in e] for i in range(2)]
            return all(x and x[-1].count(f"{topic} [") == 2 for x in last)
        harness.wait_for(two_and_two, 30, what=f"a rebalance to 2+2: {errs}")
        _produce(env, topic, [f"key-{i}:r{i}" for i in range(40)])
        harness.wait_for(lambda: sum(1 for o in outs[0] + outs[1] if " r" in o) >= 40, 20,
                         what="40 records across the two members")
    finally:
        for proc in members:
            proc.terminate()
        for proc in members:
            proc.wait(10)
    recs = [o for o in outs[0] + outs[1] if " r" in o]
    assert len(set(recs)) == 40 == len(recs), recs
    assert any(" r" in o for o in outs[0]) and any(" r" in o for o in outs[1]), outs


def _step(env, name, topic, n=0, tag="", create=False):
    """produce_n and count for the kill_restart check."""
    if name == "produce_n":
        _produce(env, topic, [f"k{i}:{tag}{i}" for i in range(n)])
        return {"acked": n}
    recs = _consume(env, topic)
    return {"records": len(recs), "distinct": len({v for *_, v, _ in recs})}


CHECKS = {"sasl": check_sasl, "produce": check_produce, "group_resume": check_group_resume,
          "seek": check_seek, "offsets_by_time": check_offsets_by_time,
          "offsets_by_time_exact": check_offsets_by_time_exact,
          "rebalance": check_rebalance, "kill_restart": kill_restart_check(_step, "kc-kill")}


def test_kcat():
    run_client("kcat", CHECKS)
