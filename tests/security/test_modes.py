"""Modes (docs/security.md): production is the default of every binary and refuses to start on a
missing, short or published secret, or on a bus configuration holding a development token; the
development mode starts and says which development secrets it runs on.

On a33fd25 guard and history started silently on the published development auth secret, a
service without BUS_SIGNING_SECRET accepted unsigned deliveries, and config/bus/login.json
accepted dev-login-token wherever it ran.
"""
import json
import os
import subprocess

import harness

# Every variable that could hand a process a secret or a mode: removed, so a test states all.
SECRET_VARS = ["BUS_ENV", "BUS_SIGNING_SECRET", "AUTH_SECRET", "BUS_ADMIN_TOKEN",
               "LOGIN_TOKEN_SHA256", "CODE_SEAL_KEYS", "GAMESIM_ADMIN_TOKEN"]
STRONG = "c2VjdXJpdHktdGVzdC1rZXktMzItYnl0ZXMtbG9uZy0hIQ=="  # 48 bytes, not a default
DEV_SIGNING = "dev-only-bus-signing-secret-change-me"  # lib/delivery.h DELIVERY_DEV_SECRET
DEV_AUTH = "dev-only-auth-secret-change-me"  # lib/auth.h AUTH_DEV_SECRET
# The receivers of bus deliveries (each checks signatures with bus_secret).
RECEIVERS = ["ipcheck", "history", "guard", "notify", "campaign", "gamesim"]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in SECRET_VARS and not k.endswith("_FILE") and
           not k.endswith("_BUS_SECRET") and not k.endswith("_AUTH_SECRET")}
    env.update(extra)
    return env


def run(binary, env, args=()):
    """Runs bin/<binary> to its exit (it must refuse before doing anything); returns (exit code,
    non-empty output lines)."""
    path = harness.bin_path(binary)
    if not os.path.exists(path):
        raise harness.Skip(f"{binary} not built")
    p = subprocess.run([path, *args], capture_output=True, text=True, env=env, cwd=harness.ROOT,
                       timeout=20 * harness.timeout_mult())
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    return p.returncode, lines


def assert_refused(binary, env, setting, args=()):
    rc, lines = run(binary, env, args)
    assert rc == 2, f"{binary}: exit {rc}, want 2: {lines}"
    assert len(lines) == 1, f"{binary}: want one line, got {lines}"
    assert setting in lines[0], f"{binary}: {lines[0]} does not name {setting}"
    return lines[0]


def test_production_is_the_default_and_refuses_a_missing_signing_secret():
    # BUS_ENV absent: production. No BUS_SIGNING_SECRET: every receiver refuses to start.
    for binary in RECEIVERS:
        line = assert_refused(binary, clean_env(AUTH_SECRET=STRONG), "BUS_SIGNING_SECRET")
        assert "bus_secret" in line and "development value" in line, line


def test_production_refuses_short_and_development_secrets():
    for binary in RECEIVERS:
        assert_refused(binary, clean_env(AUTH_SECRET=STRONG, BUS_SIGNING_SECRET="short-secret"),
                       "shorter than 32 bytes")
        assert_refused(binary, clean_env(AUTH_SECRET=STRONG, BUS_SIGNING_SECRET=DEV_SIGNING),
                       "development value")
    # One key of a rotation list that is weak is enough to refuse.
    assert_refused("ipcheck", clean_env(BUS_SIGNING_SECRET=STRONG + " short"), "bus_secret")
    # The player/staff token secret of guard and history.
    for binary in ("guard", "history"):
        line = assert_refused(binary, clean_env(BUS_SIGNING_SECRET=STRONG), "auth_secret")
        assert "AUTH_SECRET" in line, line
        line = assert_refused(binary, clean_env(BUS_SIGNING_SECRET=STRONG, AUTH_SECRET=DEV_AUTH),
                              "auth_secret")
        assert "development value" in line, line
    # The dispatcher's admin token (its default is the development one).
    assert_refused("bus-dispatcher", clean_env(BUS_SIGNING_SECRET=STRONG), "admin.token")


def test_an_unknown_mode_is_refused():
    assert_refused("ipcheck", clean_env(BUS_ENV="prod", BUS_SIGNING_SECRET=STRONG), "BUS_ENV")


def test_production_starts_with_strong_secrets_from_files_and_logs_its_mode():
    ctx = harness.ctx()
    path = ctx.path("signing.key")
    with open(path, "w") as f:
        f.write(STRONG + "\n")
    env = {k: None for k in SECRET_VARS}
    env["BUS_SIGNING_SECRET_FILE"] = path
    env["GAMESIM_ADMIN_TOKEN"] = STRONG  # its recordings' token, a key of its own
    gs = ctx.start("gamesim", env=env)
    msgs = [ln.get("msg", "") for ln in gs.log_lines()]
    assert "mode: production (BUS_ENV)" in msgs, msgs
    assert not any("development" in m for m in msgs), msgs
    # --check-config takes the same path: a file that cannot be read refuses, naming it.
    assert_refused("gamesim", clean_env(BUS_SIGNING_SECRET_FILE=path + ".missing"),
                   "BUS_SIGNING_SECRET_FILE", args=["--check-config"])
    # The variable and its file at once: which wins would be a guess.
    assert_refused("gamesim", clean_env(BUS_SIGNING_SECRET_FILE=path, BUS_SIGNING_SECRET=STRONG),
                   "not both", args=["--check-config"])


def test_development_starts_and_warns_once_per_development_secret():
    rc, lines = run("guard", clean_env(BUS_ENV="development"), ["--check-config"])
    assert rc == 0, lines
    logs = [json.loads(ln) for ln in lines if ln.startswith("{")]
    warns = [ln["msg"] for ln in logs if ln.get("level") == "warn"]
    assert any(w.startswith("mode: development") for w in warns), warns
    for key in ("\"auth_secret\"", "\"bus_secret\""):
        hits = [w for w in warns if w.startswith("development: " + key)]
        assert len(hits) == 1, (key, warns)
    # A real secret is no development secret: no warning for it.
    rc, lines = run("guard", clean_env(BUS_ENV="development", AUTH_SECRET=STRONG),
                    ["--check-config"])
    assert rc == 0 and not any("development: \\\"auth_secret\\\"" in ln for ln in lines), lines


def _bus_dir(ctx, producers):
    """A bus configuration with one topic "login" and the given producers."""
    d = ctx.path("bus", "x")[:-2]
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "login.json"), "w") as f:
        json.dump({"topics": [{"name": "login", "producers": producers}]}, f)
    return d


DEV_TOKEN_HASH = "7012ab1530d77559be76d12f5320d28c0a44a5672315178b1c5e611b426809d1"


def test_production_refuses_a_bus_configuration_holding_a_development_token():
    ctx = harness.ctx()
    d = _bus_dir(ctx, [{"name": "login-servers", "token_sha256": DEV_TOKEN_HASH}])
    schema = os.path.join(harness.ROOT, "config", "schema", "bus.schema.json")
    env = clean_env(BUS_SIGNING_SECRET=STRONG, BUS_ADMIN_TOKEN=STRONG,
                    PUBLISHER_BUS_CONFIG_DIR=d, PUBLISHER_BUS_SCHEMA=schema,
                    DISPATCHER_BUS_CONFIG_DIR=d, DISPATCHER_BUS_SCHEMA=schema,
                    PUBLISHER_LISTEN=f"127.0.0.1:{harness.free_port()}",
                    DISPATCHER_LISTEN=f"127.0.0.1:{harness.free_port()}",
                    BUS_BOOTSTRAP=f"127.0.0.1:{harness.free_port()}")
    for binary in ("bus-publisher", "bus-dispatcher"):
        rc, lines = run(binary, env)
        errors = [ln for ln in lines if '"level":"error"' in ln]
        assert rc == 2, (binary, rc, lines)
        assert len(errors) == 1 and "development token dev-login-token" in errors[0], lines
        assert "/topics/0/producers/0/token_sha256" in errors[0], errors
    # busctl validate (and apply, which loads the same way) refuses it too.
    rc, lines = run("busctl", clean_env(), ["validate", d])
    assert rc != 0 and any("development token" in ln for ln in lines), lines
    # In development the same configuration is accepted.
    rc, lines = run("busctl", clean_env(BUS_ENV="development"), ["validate", d])
    assert rc == 0, lines


def test_the_repository_bus_configuration_in_production_needs_the_login_token_hash():
    repo = os.path.join(harness.ROOT, "config", "bus")
    env = clean_env(BUS_SIGNING_SECRET=STRONG)
    rc, lines = run("busctl", env, ["validate", repo])
    assert rc != 0 and any("producers/0/token_sha256: production" in ln for ln in lines), lines
    # With the production hash from the environment it loads, and dev-login-token is not in it.
    env["LOGIN_TOKEN_SHA256"] = "ab" * 32
    env["GUARD_PUBLISHER_TOKEN_SHA256"] = "cd" * 32  # guard's, for the notification topic
    rc, lines = run("busctl", env, ["validate", repo])
    assert rc == 0, lines
    ctx = harness.ctx()
    pub = ctx.start("bus-publisher", config={"bus_config_dir": repo,
                                             "bootstrap": f"127.0.0.1:{harness.free_port()}"},
                    env={**{k: None for k in SECRET_VARS}, "BUS_SIGNING_SECRET": STRONG,
                         "LOGIN_TOKEN_SHA256": "ab" * 32,
                         "GUARD_PUBLISHER_TOKEN_SHA256": "cd" * 32})
    st, body, _ = harness.http("POST", pub.url + "/v1/topics/login/events",
                               {"account_id": "a", "ip": "8.8.8.8", "ts": "2026-01-01T00:00:00Z"},
                               headers={"Authorization": "Bearer dev-login-token"})
    assert st in (401, 403), (st, body)
    msgs = [ln.get("msg", "") for ln in pub.log_lines()]
    assert "mode: production (BUS_ENV)" in msgs, msgs
    assert any("development producer(s)" in m for m in msgs), msgs


def test_mktoken_mints_with_the_development_secret_only_in_development():
    rc, lines = run("mktoken", clean_env(), ["player", "alice"])
    assert rc == 2 and "AUTH_SECRET" in lines[0], lines
    rc, lines = run("mktoken", clean_env(BUS_ENV="development"), ["player", "alice"])
    assert rc == 0 and lines[0].count(".") == 2, lines
    rc, lines = run("mktoken", clean_env(AUTH_SECRET=STRONG), ["staff", "sam"])
    assert rc == 0 and lines[0].count(".") == 2, lines



def test_production_refuses_the_development_contacts_tokens():
    """Guard's contacts API (a campaign's email to the player's confirmed address) has tokens of
    its own kind: production refuses notify's development token and guard's development list of
    contacts clients, as it refuses the status tokens', and starts with real ones (from files)."""
    ctx = harness.ctx()
    seal = "k1:" + STRONG
    base = dict(BUS_SIGNING_SECRET=STRONG, CODE_SEAL_KEYS=seal)
    line = assert_refused("notify", clean_env(**base), "guard_contacts_token")
    assert "development value" in line and "NOTIFY_GUARD_CONTACTS_TOKEN" in line, line
    token_file = ctx.path("contacts.token")
    with open(token_file, "w") as f:
        f.write(STRONG + "\n")
    rc, lines = run("notify", clean_env(NOTIFY_GUARD_CONTACTS_TOKEN_FILE=token_file, **base),
                    ["--check-config"])
    assert rc == 0, lines
    guard = dict(base, AUTH_SECRET=STRONG, GUARD_STATUS_TOKENS="login:" + "ab" * 32)
    line = assert_refused("guard", clean_env(**guard), "contacts_tokens")
    assert "development value" in line and "GUARD_CONTACTS_TOKENS" in line, line
    rc, lines = run("guard", clean_env(GUARD_CONTACTS_TOKENS="notify:" + "cd" * 32,
                                       GUARD_PUBLISHER_TOKEN=STRONG, **guard),
                    ["--check-config"])
    assert rc == 0, lines
