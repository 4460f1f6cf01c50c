"""One private PostgreSQL cluster for the whole test run (for each of tests/run.py's parallel
workers: tools/pg.sh), plus a fresh database per test.

    import pg
    url = pg.fresh_db()            # postgresql://bus:<password>@127.0.0.1:<port>/t_<random>
    cluster = pg.cluster()         # .url, .port, .dir, .restart(), .stop(), .start(), .psql(db, sql)

The cluster is set up as tools/pg.sh does for `make run` (docs/security.md): SCRAM passwords, the
product's role "bus" no superuser. Tests connect as bus (.psql, the URLs); only fresh_db() creates
a database as the superuser "postgres" (.admin_url), giving it to bus.

The cluster lives in a temp dir on a free port, started on first use through
harness.shared("postgres", ...) and stopped by harness.shutdown_shared() when the run (the
worker) ends.
Tests raise harness.Skip when PostgreSQL is not installed.
"""
import os
import shutil
import subprocess
import tempfile
import uuid

import harness

PG_SH = os.path.join(harness.ROOT, "tools", "pg.sh")


class Cluster:
    def __init__(self, base, port):
        self.dir = base
        self.port = port

    def _password(self, role):
        with open(os.path.join(self.dir, f"{role}.password")) as f:
            return f.read().strip()

    @property
    def url(self):
        return self.db_url("bus")

    def admin_url(self, name="postgres"):
        """The superuser's URL: for set-up only (the product never connects as it)."""
        return f"postgresql://postgres:{self._password('superuser')}@127.0.0.1:{self.port}/{name}"

    def _pg(self, *args, timeout=90):
        # The test cluster trades fsync for speed (it survives a process crash, which is what the
        # tests inflict, not a power loss); synchronous commits stay on (tools/pg.sh).
        r = subprocess.run([PG_SH, *args], capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, PG_FSYNC="off"))
        if r.returncode != 0:
            raise AssertionError(f"tools/pg.sh {' '.join(args)} failed: {r.stderr[-2000:]}")
        return r.stdout

    def start(self):
        self._pg("start", self.dir, str(self.port))

    def stop(self):
        self._pg("stop", self.dir)

    def restart(self):
        self._pg("restart", self.dir)

    def running(self):
        return subprocess.run([PG_SH, "status", self.dir]).returncode == 0

    def db_url(self, name):
        return f"postgresql://bus:{self._password('bus')}@127.0.0.1:{self.port}/{name}"

    def psql(self, db, sql, url=None):
        """Runs sql in database db as bus (or at url); returns stdout rows as lists of strings
        (tab separated)."""
        r = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-tA", "-F", "\t",
                            url or self.db_url(db), "-c", sql],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"psql failed: {r.stderr[-2000:]}")
        return [line.split("\t") for line in r.stdout.splitlines() if line != ""]


def _factory():
    if shutil.which("initdb") is None and not any(
            os.path.exists(os.path.join(d, "initdb"))
            for d in __import__("glob").glob("/usr/lib/postgresql/*/bin")):
        raise harness.Skip("PostgreSQL not installed")
    base = tempfile.mkdtemp(prefix="bustest-pg-")
    os.chmod(base, 0o755)
    c = Cluster(os.path.join(base, "pg"), harness.free_port())
    c.start()

    def close():
        try:
            c.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return c, close


def cluster():
    """The run's shared cluster (started on first call). Starts it again if a test stopped it."""
    c = harness.shared("postgres", _factory)
    if not c.running():
        c.start()
    return c


def fresh_db():
    """Creates an empty database owned by bus (as the superuser: bus may not create databases)
    and returns its URL."""
    c = cluster()
    name = "t_" + uuid.uuid4().hex[:16]
    c.psql("postgres", f"CREATE DATABASE {name} OWNER bus", url=c.admin_url())
    return c.db_url(name)
