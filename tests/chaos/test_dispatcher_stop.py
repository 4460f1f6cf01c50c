"""The dispatcher stops within shutdown_timeout_ms whatever the broker does (issue 21: its final
synchronous commit waited for a broker that was gone, still blocked after 90 s)."""
import json
import os
import signal
import threading
import time

import harness

ROOT = harness.ROOT
SCHEMA = os.path.join(ROOT, "config", "schema", "bus.schema.json")


def _setup(ctx, n_routes, slow_s=0.0):
    port = harness.free_port()
    cfg = {"listen": f"127.0.0.1:{port}", "data_dir": ctx.path("broker-data", "x")[:-2],
           "http.listen": f"127.0.0.1:{harness.free_port()}", "topics": "t:3,out:3"}
    broker = ctx.start("bus-broker", config=cfg, http=False)
    harness.wait_for(lambda: harness.tcp_open(port) or not broker.alive(), 10, what="broker")
    bootstrap = f"127.0.0.1:{port}"
    seen = []
    lock = threading.Lock()

    def sink(method, path, headers, body):
        time.sleep(slow_s)
        with lock:
            seen.append(json.loads(body)["id"])
        return 200, {"echo": 1, "account_id": "a"}, None

    url, _ = ctx.serve(sink)
    routes = [{"name": f"r{i}", "topic": "t", "endpoint": url, "concurrency": 4,
               "mode": "streaming", "output": "out"} for i in range(n_routes)]
    ctx.write_json("bus/t.json", {"topics": [{"name": "t", "partitions": 3, "key": "/account_id"},
                                             {"name": "out", "partitions": 3,
                                              "key": "/account_id"}],
                                  "routes": routes})
    lines = b"".join(f"acc-{i % 7}\t{json.dumps({'id': f'e{i}', 'account_id': f'acc-{i % 7}'})}\n"
                     .encode() for i in range(400))
    harness.kcat(["-P", "-b", bootstrap, "-t", "t", "-K", "\t", "-H", "ce-type=t"],
                 input_bytes=lines)
    return broker, bootstrap, seen, lock


def _stop_time(disp):
    t0 = time.monotonic()
    disp.signal(signal.SIGTERM)
    try:
        rc = disp.popen.wait(timeout=60)
    except Exception:
        rc = None
    return rc, time.monotonic() - t0


def test_dispatcher_stops_in_time_when_the_broker_is_gone():
    ctx = harness.ctx()
    broker, bootstrap, seen, lock = _setup(ctx, n_routes=3, slow_s=0.005)
    timeout_ms = 3000
    disp = ctx.start("bus-dispatcher", config={
        "bootstrap": bootstrap, "bus_config_dir": ctx.path("bus"), "bus_schema": SCHEMA,
        "shutdown_timeout_ms": timeout_ms}, ready_path="/healthz")
    harness.wait_for(lambda: len(seen) >= 100, 30, what="deliveries under way")
    broker.kill()  # the broker is gone, as when `make run` stopped it first
    rc, took = _stop_time(disp)
    print(f"dispatcher stop with the broker gone: {took:.2f} s (shutdown_timeout_ms "
          f"{timeout_ms})")
    assert rc == 0, (rc, disp.log()[-3000:])
    assert took <= timeout_ms / 1000 + 1.5 * harness.timeout_mult(), took


def test_dispatcher_stops_in_time_with_a_slow_endpoint():
    """Deliveries that cannot finish are abandoned at the deadline (uncommitted), the finished
    ones committed, and the process exits in time."""
    ctx = harness.ctx()
    broker, bootstrap, seen, lock = _setup(ctx, n_routes=2, slow_s=2.0)
    timeout_ms = 1500
    disp = ctx.start("bus-dispatcher", config={
        "bootstrap": bootstrap, "bus_config_dir": ctx.path("bus"), "bus_schema": SCHEMA,
        "shutdown_timeout_ms": timeout_ms}, ready_path="/healthz")
    harness.wait_for(lambda: len(seen) >= 8, 30, what="deliveries under way")
    rc, took = _stop_time(disp)
    assert rc == 0, (rc, disp.log()[-3000:])
    assert took <= timeout_ms / 1000 + 1.5 * harness.timeout_mult(), took
