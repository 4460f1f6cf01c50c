"""The database from an operator's side (docs/operations.md "Database"): `--migrate` and
`--check` on every service with a database, and a wrong DATABASE_URL explained by libpq's own
reason at error level, once, instead of an endless "unreachable"."""
import os
import subprocess
import urllib.parse

import harness
import pg

SERVICES = {"history": "history", "guard": "guard", "notify": "notify", "campaign": "campaign"}


def run(binary, *args, env=None):
    full = dict(os.environ, BUS_ENV="development")
    full.update(env or {})
    return subprocess.run([harness.bin_path(binary), *args], capture_output=True, text=True,
                          timeout=60 * harness.timeout_mult(), env=full, cwd=harness.ROOT)


def with_password(url, password):
    u = urllib.parse.urlsplit(url)
    netloc = f"{u.username}:{password}@{u.hostname}:{u.port}"
    return urllib.parse.urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))


def test_check_then_migrate_then_check_on_every_service_with_a_database():
    for binary, schema in SERVICES.items():
        url = pg.fresh_db()
        env = {"DATABASE_URL": url}
        before = run(binary, "--check", env=env)
        # Nothing applied yet: reachable, but not ready to serve.
        assert before.returncode == 1, (binary, before.stdout, before.stderr)
        assert f"schema {schema}: 0 migrations applied" in before.stdout, before.stdout
        migrated = run(binary, "--migrate", env=env)
        assert migrated.returncode == 0, (binary, migrated.stdout, migrated.stderr)
        assert f"migrations of {schema} applied" in migrated.stdout + migrated.stderr
        after = run(binary, "--check", env=env)
        assert after.returncode == 0, (binary, after.stdout, after.stderr)
        assert " 0 pending" in after.stdout and " 0 migrations applied" not in after.stdout, \
            after.stdout
        # The step is repeatable: a second --migrate finds everything applied.
        assert run(binary, "--migrate", env=env).returncode == 0


def test_a_process_without_a_database_refuses_migrate():
    r = run("gamesim", "--migrate")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "has no database" in r.stdout + r.stderr


def test_wrong_password_and_missing_database_are_explained_by_libpq():
    url = pg.fresh_db()
    wrong = with_password(url, "not-the-password")
    r = run("history", "--check", env={"DATABASE_URL": wrong})
    assert r.returncode == 1
    assert "password authentication failed" in r.stdout + r.stderr, r.stdout + r.stderr
    missing = url.rsplit("/", 1)[0] + "/no_such_database_here"
    r = run("history", "--migrate", env={"DATABASE_URL": missing})
    assert r.returncode == 1
    # JSON log lines: libpq's quotes come escaped.
    assert 'database \\"no_such_database_here\\" does not exist' in r.stdout + r.stderr, r.stderr


def test_a_serving_process_logs_the_reason_once_at_error_level_while_it_retries():
    url = pg.fresh_db()
    ctx = harness.ctx()
    p = ctx.start("history", http=False, env={
        "BUS_ENV": "development", "DATABASE_URL": with_password(url, "not-the-password"),
        "HISTORY_LISTEN": f"127.0.0.1:{harness.free_port()}"})
    harness.wait_for(lambda: p.log().count("retrying migrations") >= 3, timeout=30,
                     what="three migration attempts")
    errors = [ln for ln in p.log_lines() if ln.get("level") == "error"]
    reasons = [ln for ln in errors if "password authentication failed" in ln.get("msg", "")]
    assert len(reasons) == 1, errors
    warns = [ln for ln in p.log_lines() if "retrying migrations" in ln.get("msg", "")]
    assert all("password authentication failed" in ln["msg"] for ln in warns), warns
