"""guard's alert rules in docs/ops/alerts.yml (group guard), checked and evaluated by promtool
against synthetic series of guard_throttle_episodes_total: a burst of accounts starting
brute-force throttling fires CredentialStuffingWave, the usual trickle does not; addresses are
told apart by the kind label."""
import json
import os
import shutil
import subprocess
import tempfile

import yaml

import harness

ALERTS = os.path.join(harness.ROOT, "docs", "ops", "alerts.yml")


def promtool():
    p = shutil.which("promtool")
    if p is None:
        raise harness.Skip("promtool not installed (Debian package prometheus, make deps)")
    return p


def guard_rules():
    groups = yaml.safe_load(open(ALERTS))["groups"]
    return {r["alert"]: r for g in groups if g["name"] == "guard" for r in g["rules"]}


def firing(rule, account_per_min, address_per_min, minutes=20):
    """Whether rule's expression has a result after `minutes` of episodes started at these
    rates a minute (one guard instance), evaluated by promtool test rules."""
    def series(kind, rate):
        return {"series": f'guard_throttle_episodes_total{{kind="{kind}",instance="g1"}}',
                "values": f"0+{rate}x{minutes}"}
    tests = {"tests": [{
        "interval": "1m",
        "input_series": [series("account", account_per_min), series("address", address_per_min)],
        "promql_expr_test": [{"expr": f"count({rule['expr']})", "eval_time": f"{minutes}m",
                              "exp_samples": [{"labels": "{}", "value": 1}]}]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(tests, f)  # JSON is YAML
    try:
        r = subprocess.run([promtool(), "test", "rules", f.name], capture_output=True, text=True,
                           timeout=60)
    finally:
        os.unlink(f.name)
    out = r.stdout + r.stderr
    # not firing is the expression's empty answer, never a test file promtool could not run
    assert r.returncode == 0 or "got: nil" in out, out
    return r.returncode == 0


def test_alert_rules_check_and_fire_on_a_wave_only():
    r = subprocess.run([promtool(), "check", "rules", ALERTS], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    rules = guard_rules()
    wave, addresses = rules["CredentialStuffingWave"], rules["BruteForceAddresses"]
    assert wave["labels"]["severity"] == "critical"
    # 5 accounts a minute (50 in 10 minutes) is a wave; 1 a minute is a few players mistyping
    assert firing(wave, 5, 0)
    assert not firing(wave, 1, 0)
    # many addresses throttled is not a wave of accounts, and fires its own rule
    assert not firing(wave, 0, 5)
    assert firing(addresses, 0, 1)
    assert not firing(addresses, 5, 0)
