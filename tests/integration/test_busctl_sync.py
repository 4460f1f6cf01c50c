"""busctl sync (docs/bus.md "From git to the running bus"): a route merged into the followed
branch of a git repository goes live without anyone running busctl by hand; an invalid one is
refused before anything changes, and the running routes keep running. The repository is a
local bare one, as a git server would hold it."""
import importlib.util
import json
import os
import shutil
import subprocess

import harness

_spec = importlib.util.spec_from_file_location(
    "dispatcher_helpers", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "test_dispatcher.py"))
td = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(td)

BROKERS = ["embedded"]  # busctl apply creates topics through CreateTopics, which the mock lacks
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def git(*args, cwd):
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, **GIT_ENV))
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout.strip()


def push(work, routes, topics, message):
    """A merge to main: the team's configuration change, pushed to the server."""
    with open(os.path.join(work, "config", "bus", "test.json"), "w") as f:
        json.dump({"topics": topics, "routes": routes}, f, indent=1)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def sync(repo, workdir, env):
    r = subprocess.run([harness.bin_path("busctl"), "sync", "--repo", repo, "--workdir",
                        workdir, "--once"], capture_output=True, text=True,
                       timeout=120 * harness.timeout_mult(), env=dict(os.environ, **env),
                       cwd=harness.ROOT)
    return r.returncode, r.stdout, r.stderr


def routes_of(disp):
    st, body, _ = harness.http("GET", disp.url + "/v1/routes", headers=td.ADMIN)
    assert st == 200, (st, body)
    return body["config_commit"], sorted(r["name"] for r in body["routes"])


def test_sync_applies_merged_routes_and_refuses_an_invalid_merge():
    if shutil.which("git") is None:
        raise harness.Skip("git not installed")
    ctx = harness.ctx()
    sink_a, sink_b = td.Sink(), td.Sink()
    ua, ub = ctx.serve(sink_a)[0], ctx.serve(sink_b)[0]
    topics = [td.topic("t", 2)]
    broker = td.broker_with({"t": 2})

    repo, work, workdir = ctx.path("server", "bus.git"), ctx.path("laptop"), ctx.path("sync")
    os.makedirs(repo)
    git("init", "-q", "--bare", "-b", "main", repo, cwd=ctx.tmp)
    git("clone", "-q", repo, work, cwd=ctx.tmp)
    git("checkout", "-q", "-b", "main", cwd=work)
    os.makedirs(os.path.join(work, "config", "bus"))
    shutil.copytree(os.path.join(harness.ROOT, "config", "schema"),
                    os.path.join(work, "config", "schema"))
    first = push(work, [td.route("ra", "t", ua)], topics, "route ra")

    env = {"BUS_BOOTSTRAP": broker.bootstrap, "DISPATCHER_URLS": ""}
    rc, out, err = sync(repo, workdir, env)
    assert rc == 0 and f"applied {first}" in out, (rc, out, err)
    live = os.path.join(workdir, "config", "bus")
    disp = td.start_dispatcher(broker, live,
                               bus_schema=os.path.join(workdir, "config/schema/bus.schema.json"))
    assert routes_of(disp) == (first, ["ra"])
    env["DISPATCHER_URLS"] = disp.url
    rc, out, err = sync(repo, workdir, env)
    assert rc == 0 and "up to date" in out, (rc, out, err)

    # The team merges a second route: it goes live, plan first.
    second = push(work, [td.route("ra", "t", ua), td.route("rb", "t", ub)], topics, "route rb")
    rc, out, err = sync(repo, workdir, env)
    assert rc == 0, (rc, out, err)
    assert out.index("+ route rb") < out.index(f"applied {second}"), out
    assert routes_of(disp) == (second, ["ra", "rb"])
    evs = td.events(20)
    td.produce(broker, "t", evs)
    td.wait_all(sink_b, [e["id"] for e in evs], what="events through the merged route")
    td.wait_all(sink_a, [e["id"] for e in evs])
    assert td.metric(disp, "bus_dispatcher_config_info", f'commit="{second}"') == 1

    # An invalid merge is refused: nothing changes, not even the files the dispatcher reads.
    before = open(os.path.join(live, "test.json")).read()
    bad = push(work, [td.route("ra", "t", "ftp://nowhere/x")], topics, "broken endpoint")
    rc, out, err = sync(repo, workdir, env)
    assert rc == 1 and f"{bad} refused" in err, (rc, out, err)
    assert "applied" not in out, out
    assert open(os.path.join(live, "test.json")).read() == before
    assert routes_of(disp) == (second, ["ra", "rb"])
    more = td.events(10, prefix="m")
    td.produce(broker, "t", more)
    td.wait_all(sink_b, [e["id"] for e in more], what="the running routes still deliver")
    # A SIGHUP or a restart of the dispatcher still finds the last valid configuration.
    assert subprocess.run([harness.bin_path("busctl"), "validate", live], capture_output=True,
                          env=dict(os.environ, BUS_SCHEMA=td.SCHEMA)).returncode == 0

    # The fix merged after it applies.
    fixed = push(work, [td.route("ra", "t", ua)], topics, "drop rb")
    rc, out, err = sync(repo, workdir, env)
    assert rc == 0 and f"applied {fixed}" in out and "- route rb" in out, (rc, out, err)
    assert routes_of(disp) == (fixed, ["ra"])
