"""The development PostgreSQL (tools/pg.sh, the cluster of `make run` and of the tests): password
(SCRAM) authentication, a private socket folder, and the product's role no superuser.

On a33fd25 the cluster trusted every local user and the product's role was a superuser:
`COPY ... FROM PROGRAM` ran a shell command as the database server.
"""
import os
import stat
import subprocess

import harness
import pg


def _psql(url, sql):
    return subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-tA", url, "-c", sql],
                          capture_output=True, text=True, timeout=60)


def test_the_product_role_cannot_run_programs_or_read_server_files():
    url = pg.fresh_db()  # as the product connects: role bus, with its password
    marker = harness.ctx().path("copy-from-program-ran")
    r = _psql(url, "CREATE TABLE t (x text); "
                   f"COPY t FROM PROGRAM 'touch {marker}; echo pwned'")
    assert r.returncode != 0 and "pg_execute_server_program" in r.stderr, r.stderr
    assert not os.path.exists(marker)
    r = _psql(url, "SELECT pg_read_file('postgresql.conf')")
    assert r.returncode != 0 and "permission denied" in r.stderr, r.stderr
    r = _psql(url, "CREATE ROLE intruder SUPERUSER")
    assert r.returncode != 0, r.stdout
    r = _psql(url, "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                   "WHERE rolname = current_user")
    assert r.returncode == 0 and r.stdout.strip() == "f|f|f", (r.stdout, r.stderr)
    # It owns its database and what it creates there: the services' migrations work.
    r = _psql(url, "CREATE SCHEMA s; CREATE TABLE s.t (x int); INSERT INTO s.t VALUES (1)")
    assert r.returncode == 0, r.stderr


def test_connections_need_the_password_and_the_socket_is_private():
    c = pg.cluster()
    url = c.db_url("bus")
    assert _psql(url, "SELECT 1").returncode == 0
    password = c._password("bus")
    no_password = url.replace(":" + password + "@", "@")
    assert no_password != url
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for bad in (no_password, url.replace("bus:", "bus:x", 1),
                no_password.replace("bus@", "postgres@")):
        r = subprocess.run(["psql", "-X", "-tA", bad, "-c", "SELECT 1"], capture_output=True,
                           text=True, timeout=30, env=env)
        assert r.returncode != 0 and ("password" in r.stderr), (bad, r.stderr)
    for path in ("sock", "."):
        mode = stat.S_IMODE(os.stat(os.path.join(c.dir, path)).st_mode)
        assert mode == 0o700, (path, oct(mode))
    for name in ("bus.password", "superuser.password"):
        mode = stat.S_IMODE(os.stat(os.path.join(c.dir, name)).st_mode)
        assert mode == 0o600, (name, oct(mode))
    with open(os.path.join(c.dir, "data", "pg_hba.conf")) as f:
        rules = [ln.split() for ln in f if ln.strip() and not ln.startswith("#")]
    assert rules and all(r[-1] == "scram-sha-256" for r in rules), rules


def test_pg_sh_url_carries_the_password():
    c = pg.cluster()
    r = subprocess.run([pg.PG_SH, "url", c.dir, str(c.port)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == c.db_url("bus")
    assert _psql(r.stdout.strip(), "SELECT current_user").stdout.strip() == "bus"
