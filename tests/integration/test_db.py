"""lib/db.c against the test cluster: durable commits whatever the server's default.

The C side is tests/unit/test_db.c (run without a database by the unit pass, where it skips);
here it runs against fresh databases of the run's private cluster (tests/lib/pg.py)."""
import os
import subprocess

import harness
import pg


def _test_db_binary():
    build = "build/asan" if harness.is_asan() else "build/release"
    path = os.path.join(harness.ROOT, build, "tests", "test_db")
    if not os.path.exists(path):
        raise harness.Skip(f"{path} not built")
    return path


def test_connections_commit_synchronously_when_database_default_is_off():
    cluster = pg.cluster()
    off_url = pg.fresh_db()
    off_db = off_url.rsplit("/", 1)[1]
    cluster.psql("bus", f"ALTER DATABASE {off_db} SET synchronous_commit = off")
    # The database default really is off for a plain session (so the test can fail) ...
    assert cluster.psql(off_db, "SHOW synchronous_commit") == [["off"]]
    local_url = pg.fresh_db()
    local_db = local_url.rsplit("/", 1)[1]
    cluster.psql("bus", f"ALTER DATABASE {local_db} SET synchronous_commit = local")
    # ... and lib/db.c's connections commit synchronously anyway, keeping a stronger setting.
    r = subprocess.run([_test_db_binary()], capture_output=True, text=True,
                       timeout=60 * harness.timeout_mult(), cwd=harness.ROOT,
                       env=dict(os.environ, CMOCKA_MESSAGE_OUTPUT="stdout",
                                TEST_DATABASE_URL=off_url, TEST_DATABASE_URL_LOCAL=local_url))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    # (and an array literal read back through the server: test_array_literal_round_trips)
    assert out.count("[       OK ]") == 3 and "SKIPPED" not in out, out


def test_private_cluster_is_durable_unless_fsync_is_traded():
    """tools/pg.sh (what `make run` starts): fsync and synchronous commits on by default, even
    for a cluster whose postgresql.conf an older pg.sh wrote with both off; PG_FSYNC=off trades
    fsync only, never synchronous commits."""
    if not os.path.exists(pg.PG_SH):
        raise harness.Skip("tools/pg.sh missing")
    pg.cluster()  # skips when PostgreSQL is not installed
    base = harness.ctx().path("pg")
    os.makedirs(base, exist_ok=True)
    os.chmod(harness.ctx().tmp, 0o755)
    c = pg.Cluster(base, harness.free_port())
    env = {k: v for k, v in os.environ.items() if k not in ("PG_FSYNC", "PG_DURABLE")}

    def sh(*args, **extra):
        r = subprocess.run([pg.PG_SH, *args], capture_output=True, text=True, timeout=120,
                           env=dict(env, **extra))
        assert r.returncode == 0, r.stderr

    def show(name):
        return c.psql("bus", f"SHOW {name}")[0][0]

    try:
        sh("init", base, str(c.port))
        with open(os.path.join(base, "data", "postgresql.conf"), "a") as f:
            f.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        sh("start", base, str(c.port))
        assert (show("fsync"), show("synchronous_commit"), show("full_page_writes")) == \
            ("on", "on", "on")
        sh("stop", base)
        sh("start", base, str(c.port), PG_FSYNC="off")
        assert (show("fsync"), show("synchronous_commit")) == ("off", "on")
    finally:
        subprocess.run([pg.PG_SH, "stop", base], capture_output=True, timeout=120)
