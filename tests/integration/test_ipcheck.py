"""ipcheck: login deliveries enriched with the country (streaming route login → login.checked).

Deterministic tests use tiny MaxMind databases written here with Debian's
libmaxmind-db-writer-perl (both layouts: npm "country_code" and MaxMind "country.iso_code");
one test uses the real npm database fetched by make deps."""
import json
import os
import subprocess
import threading
import uuid

import harness
from tokens import BUS

WRITER = r"""
use strict; use warnings;
use MaxMind::DB::Writer::Tree;
my ($out, $layout, @nets) = @ARGV;
my %types = (country_code => 'utf8_string', country => 'map', iso_code => 'utf8_string');
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version => 6, record_size => 24, database_type => 'bus-test', languages => ['en'],
    description => { en => 'test' }, map_key_type_callback => sub { $types{ $_[0] } },
    remove_reserved_networks => 0);
for my $n (@nets) {
    my ($net, $cc) = split /=/, $n;
    my $rec = $layout eq 'maxmind' ? { country => { iso_code => $cc } } : { country_code => $cc };
    $tree->insert_network($net, $rec);
}
open my $fh, '>:raw', $out or die "open $out: $!";
$tree->write_tree($fh);
close $fh or die;
"""

REAL_DB = os.path.join(harness.ROOT, "var", "geoip", "geo-whois-asn-country.mmdb")


def make_mmdb(path, nets, layout="npm"):
    script = harness.ctx().path("writer.pl")
    with open(script, "w") as f:
        f.write(WRITER)
    args = ["perl", script, path, layout] + [f"{n}={c}" for n, c in nets.items()]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        if "Can't locate MaxMind" in r.stderr:
            raise harness.Skip("libmaxmind-db-writer-perl not installed (make deps)")
        raise AssertionError(r.stderr)
    return path


LOGIN = {"account_id": "acct-1", "ip": "11.2.3.4", "ts": "2026-11-25T06:00:00.000Z",
         "session_id": "s-1", "server": "eu-1", "client": "pc"}


def deliver(svc, event, ce_id=None, secret=BUS, raw=None, sig=None):
    body = raw if raw is not None else json.dumps(event).encode()
    ce_id = ce_id or str(uuid.uuid4())  # each delivery its own event, as the bus sends them
    headers = harness.delivery_headers(secret, body, ce_id, "login", {"ce-source": "test"})
    if sig is not None:
        headers.update(sig)
    status, resp, _ = harness.http("POST", svc.url + "/v1/deliveries/login", raw=body,
                                   headers=headers)
    return status, resp


def start(db_path, **extra):
    cfg = {"geoip_db": db_path, "reload_check_ms": 50}
    cfg.update(extra)
    return harness.ctx().start("ipcheck", config=cfg, env={"BUS_SIGNING_SECRET": BUS})


def as_json(resp):
    return resp if isinstance(resp, (dict, list)) else json.loads(resp)


def test_enriches_ipv4_ipv6_and_unknown():
    ctx = harness.ctx()
    db = make_mmdb(ctx.path("geo.mmdb"), {"11.0.0.0/8": "DE", "2a00:1450::/32": "FR",
                                          "13.0.0.0/8": "se"})
    svc = start(db)
    status, resp = deliver(svc, LOGIN, ce_id="id-42")
    assert status == 200, (status, resp)
    out = as_json(resp)
    for k, v in LOGIN.items():
        assert out[k] == v, (k, out)
    assert out["login_id"] == "id-42"
    assert out["country"] == "DE"
    cases = {"2a00:1450::1": "FR", "13.1.1.1": "SE", "12.0.0.1": "ZZ", "10.1.2.3": "ZZ",
             "192.168.1.1": "ZZ", "127.0.0.1": "ZZ", "100.64.0.1": "ZZ", "::1": "ZZ",
             "fe80::1": "ZZ", "fd00::5": "ZZ", "2001:db8::1": "ZZ", "::ffff:11.2.3.4": "DE",
             "::ffff:10.0.0.1": "ZZ", "224.0.0.1": "ZZ", "2a01::1": "ZZ"}
    for ip, want in cases.items():
        status, resp = deliver(svc, dict(LOGIN, ip=ip))
        assert status == 200, (ip, status, resp)
        assert as_json(resp)["country"] == want, (ip, resp)


def test_invalid_input_is_422():
    ctx = harness.ctx()
    svc = start(make_mmdb(ctx.path("geo.mmdb"), {"11.0.0.0/8": "DE"}))
    for ip in ["999.1.1.1", "11.2.3", "hello", "", "1.2.3.4 ", "::g", 42, None]:
        status, resp = deliver(svc, dict(LOGIN, ip=ip))
        assert status == 422, (ip, status, resp)
        assert "error" in as_json(resp)
    no_ip = dict(LOGIN)
    del no_ip["ip"]
    assert deliver(svc, no_ip)[0] == 422
    assert deliver(svc, None, raw=b"{not json")[0] == 422
    assert deliver(svc, None, raw=b"[1,2]")[0] == 422


def test_signature_checked_when_secret_set():
    ctx = harness.ctx()
    svc = ctx.start("ipcheck", config={"geoip_db": make_mmdb(ctx.path("geo.mmdb"),
                                                              {"11.0.0.0/8": "DE"})},
                    env={"BUS_SIGNING_SECRET": "s3cret"})
    assert deliver(svc, LOGIN, secret=None)[0] == 401
    body = json.dumps(LOGIN).encode()
    wrong = harness.delivery_headers("other", body, "id-1", "login")
    assert deliver(svc, LOGIN, ce_id="id-1", sig=wrong)[0] == 401
    assert deliver(svc, LOGIN, secret="other")[0] == 401
    status, resp = deliver(svc, LOGIN, secret="s3cret")
    assert status == 200 and as_json(resp)["country"] == "DE", (status, resp)


def test_maxmind_layout():
    ctx = harness.ctx()
    svc = start(make_mmdb(ctx.path("geo.mmdb"), {"11.0.0.0/8": "JP", "2a00::/16": "BR"},
                          layout="maxmind"))
    assert as_json(deliver(svc, LOGIN)[1])["country"] == "JP"
    assert as_json(deliver(svc, dict(LOGIN, ip="2a00:1::1"))[1])["country"] == "BR"


def test_reload_replaced_file_without_dropping_requests():
    ctx = harness.ctx()
    db = make_mmdb(ctx.path("geo.mmdb"), {"11.0.0.0/8": "DE"})
    new = make_mmdb(ctx.path("geo-new.mmdb"), {"11.0.0.0/8": "NL"})
    svc = start(db)
    results = []
    failures = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                status, resp = deliver(svc, LOGIN)
                if status != 200:
                    failures.append((status, resp))
                else:
                    results.append(as_json(resp)["country"])
            except Exception as e:  # a dropped connection is a failure too
                failures.append(repr(e))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        harness.wait_for(lambda: len(results) > 50, what="requests before the swap")
        os.rename(new, db)  # atomic replace, as a deploy would do
        harness.wait_for(lambda: results[-1] == "NL" and results[-20:] == ["NL"] * 20
                         if len(results) > 20 else False, what="new database in use")
        # and once more, with an in-place copy (same inode, new mtime/size)
        third = make_mmdb(ctx.path("geo-third.mmdb"), {"11.0.0.0/8": "IT", "12.0.0.0/8": "IT"})
        with open(third, "rb") as src, open(db + ".tmp", "wb") as dst:
            dst.write(src.read())
        os.rename(db + ".tmp", db)
        harness.wait_for(lambda: results[-1] == "IT", what="third database in use")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:5]
    assert set(results) <= {"DE", "NL", "IT"}, set(results)

    # The swap is visible to requests a moment before the reload is counted (the loop counts
    # after geo_reload_if_changed returns): wait for the count rather than read it once.
    def reloads():
        _, body, _ = harness.http("GET", svc.url + "/metrics")
        text = body if isinstance(body, str) else body.decode()
        return "ipcheck_db_reloads_total 2" in text
    harness.wait_for(reloads, what="two reloads counted")


def test_corrupt_replacement_keeps_old_database():
    ctx = harness.ctx()
    db = make_mmdb(ctx.path("geo.mmdb"), {"11.0.0.0/8": "DE"})
    svc = start(db)
    with open(db + ".tmp", "wb") as f:
        f.write(b"not an mmdb at all")
    os.rename(db + ".tmp", db)
    harness.wait_for(lambda: "reload skipped" in svc.log(), what="reload attempt logged")
    status, resp = deliver(svc, LOGIN)
    assert status == 200 and as_json(resp)["country"] == "DE", (status, resp)


def test_real_npm_database():
    if not os.path.exists(REAL_DB):
        raise harness.Skip("GeoIP database not fetched (make deps)")
    svc = start(REAL_DB)
    for ip in ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"]:
        status, resp = deliver(svc, dict(LOGIN, ip=ip))
        assert status == 200, (ip, status, resp)
        cc = as_json(resp)["country"]
        assert len(cc) == 2 and cc.isupper() and cc != "ZZ", (ip, cc)
    assert as_json(deliver(svc, dict(LOGIN, ip="10.0.0.1"))[1])["country"] == "ZZ"


BATCH_TYPE = "application/cloudevents-batch+json"


def deliver_batch(svc, events, ids):
    """POSTs events as one batch (CloudEvents batched content mode), as a route with "batch"
    > 1 does."""
    body = json.dumps([{"specversion": "1.0", "id": i, "type": "login", "source": "test",
                        "time": e["ts"], "data": e} for e, i in zip(events, ids)]).encode()
    status, resp, _ = harness.http("POST", svc.url + "/v1/deliveries/login", raw=body,
                                   headers=harness.delivery_headers(BUS, body, ids[0],
                                                                    batch=True))
    return status, resp


def test_batch_answers_enriched_events_in_order():
    ctx = harness.ctx()
    svc = start(make_mmdb(ctx.path("geo.mmdb"), {"11.0.0.0/8": "DE", "2a00:1450::/32": "FR"}))
    events = [LOGIN, dict(LOGIN, ip="2a00:1450::1", account_id="acct-2"),
              dict(LOGIN, ip="10.1.2.3", account_id="acct-3")]
    ids = ["id-b1", "id-b2", "id-b3"]
    status, resp = deliver_batch(svc, events, ids)
    assert status == 200, (status, resp)
    out = as_json(resp)
    assert isinstance(out, list) and len(out) == 3, out
    for ev, login_id, want, got in zip(events, ids, ["DE", "FR", "ZZ"], out):
        assert got == dict(ev, login_id=login_id, country=want), got


def test_batch_with_an_invalid_ip_is_refused_whole():
    ctx = harness.ctx()
    svc = start(make_mmdb(ctx.path("geo.mmdb"), {"11.0.0.0/8": "DE"}))
    status, resp = deliver_batch(svc, [LOGIN, dict(LOGIN, ip="999.1.1.1"), LOGIN],
                                 ["id-r1", "id-r2", "id-r3"])
    assert status == 422, (status, resp)
    assert as_json(resp)["error"] == "batch_refused", resp
    # the bus then delivers the events one by one: each single answer decides as before
    assert deliver(svc, dict(LOGIN, ip="999.1.1.1"), ce_id="id-r2")[0] == 422
    assert deliver(svc, LOGIN, ce_id="id-r1")[0] == 200
