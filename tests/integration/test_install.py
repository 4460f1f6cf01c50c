"""make install and make deb (docs/ops/README.md "Install"): the product's files land where the
units and the packagers expect, and the product runs from the installed paths only."""
import glob
import os
import re
import shutil
import stat
import subprocess
import tempfile

import harness

ASAN = False  # packaging, not C paths: once is enough
# `make install` and `make deb` run make in the tree: one at a time with the other modules that
# do (tests/run.py).
SERIAL_GROUP = "make-in-tree"
ROOT = harness.ROOT
PROGRAMS = ["bus-broker", "bus-publisher", "bus-dispatcher", "busctl", "ipcheck", "history",
            "guard", "notify", "campaign"]
UNITS = ["bus-broker", "bus-publisher", "bus-dispatcher", "ipcheck", "history", "guard",
         "notify", "campaign"]
GEOIP = os.path.join(ROOT, "var", "geoip", "geo-whois-asn-country.mmdb")


def install(prefix, sysconfdir, destdir=""):
    r = subprocess.run(["make", "--no-print-directory", "-s", "install", f"PREFIX={prefix}",
                        f"SYSCONFDIR={sysconfdir}", f"DESTDIR={destdir}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_make_install_puts_programs_units_tree_and_examples_in_place():
    with tempfile.TemporaryDirectory() as tmp:
        prefix, etc = f"{tmp}/usr", f"{tmp}/etc"
        install(prefix, etc)
        for p in PROGRAMS:
            path = f"{prefix}/bin/{p}"
            assert os.access(path, os.X_OK), path
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
            assert out.returncode == 0 and out.stdout.startswith(p + " "), (p, out)
        # Simulators and the development token tool are not part of an installation.
        for p in ("gamesim", "loginsim", "mktoken"):
            assert not os.path.exists(f"{prefix}/bin/{p}"), p
        share = f"{prefix}/share/bus"
        for rel in ("config/schema/bus.schema.json", "config/bus/product.json",
                    "sql/history/001_logins.sql", "services/history/web/index.html",
                    "services/guard/web/support/index.html", "bus/dispatcher/web/index.html",
                    "lib/web/api.js", "notify/templates/lock_code.en.txt"):
            assert os.path.isfile(f"{share}/{rel}"), rel
        assert not os.path.exists(f"{share}/var"), "state must never be installed"
        # The installed API specs' references to the event schemas resolve in the installation.
        api = f"{prefix}/share/doc/bus/api"
        refs = 0
        for spec in glob.glob(f"{api}/*.yaml"):
            for ref in re.findall(r'\$ref: *"?([^"#\s]+\.json)', open(spec).read()):
                refs += 1
                assert os.path.isfile(os.path.normpath(os.path.join(api, ref))), (spec, ref)
        assert refs > 0
        assert os.path.isfile(f"{prefix}/share/doc/bus/security.md") or \
            os.path.isfile(f"{prefix}/share/doc/bus/operations.md")
        for u in UNITS:
            text = open(f"{prefix}/lib/systemd/system/{u}.service").read()
            assert f"ExecStart={prefix}/bin/{u} --config {etc}/bus/{u}.json" in text, (u, text)
            assert f"WorkingDirectory={share}" in text, u
            assert "/usr/local/bin" not in text and "/opt/bus" not in text, u
            assert open(f"{etc}/bus/{u}.json").read().strip() == "{}", u
        mode = stat.S_IMODE(os.stat(f"{etc}/bus/secrets.env").st_mode)
        assert mode == 0o600, oct(mode)

        # An operator's edit survives a second install.
        with open(f"{etc}/bus/guard.json", "w") as f:
            f.write('{"log.level": "debug"}\n')
        install(prefix, etc)
        assert "debug" in open(f"{etc}/bus/guard.json").read()

        analyze = shutil.which("systemd-analyze")
        if analyze:
            for u in UNITS:
                r = subprocess.run([analyze, "verify", "--man=no",
                                    f"{prefix}/lib/systemd/system/{u}.service"],
                                   capture_output=True, text=True, timeout=60)
                # The binaries exist now: every message would be a real problem.
                errs = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
                assert not errs, (u, errs)


def test_installed_product_runs_from_the_installed_paths_only():
    if shutil.which("unshare") is None:
        raise harness.Skip("unshare not available")
    with tempfile.TemporaryDirectory() as tmp:
        prefix, etc = f"{tmp}/usr", f"{tmp}/etc"
        install(prefix, etc)
        # The checkout is out of reach of the smoke script but for the GeoIP data (which the
        # package does not ship: /var/lib/GeoIP in production); it runs in a network namespace
        # of its own, so the product's default ports are free whatever this machine runs.
        geoip = f"{tmp}/GeoIP.mmdb"
        shutil.copy(GEOIP, geoip)
        script = f"{tmp}/install_smoke.sh"
        shutil.copy(os.path.join(ROOT, "tests", "integration", "install_smoke.sh"), script)
        r = subprocess.run(["unshare", "-n", script, prefix, etc, f"{tmp}/state", geoip],
                           cwd=tmp, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "login.checked carries the country" in r.stdout, r.stdout


def test_make_deb_builds_a_package_dpkg_installs_and_purges():
    for tool in ("dpkg-deb", "dpkg-shlibdeps"):
        if shutil.which(tool) is None:
            raise harness.Skip(f"{tool} missing (Debian package dpkg-dev, make deps)")
    r = subprocess.run(["make", "--no-print-directory", "-s", "deb"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    deb = r.stdout.strip().splitlines()[-1]
    deb = deb if os.path.isabs(deb) else os.path.join(ROOT, deb)
    assert re.search(r"/bus-account-security_[0-9][^_]*_[a-z0-9]+\.deb$", deb), deb

    def field(name):
        out = subprocess.run(["dpkg-deb", "-f", deb, name], capture_output=True, text=True)
        return out.stdout.strip()
    assert field("Package") == "bus-account-security"
    depends = field("Depends")
    for lib in ("librdkafka1", "libpq5", "libjansson4", "libcurl4"):
        assert lib in depends, depends
    # The HTTP server is the project's own (lib/http/http_loop.c): no libmicrohttpd at run time.
    assert "libmicrohttpd" not in depends, depends
    info = subprocess.run(["dpkg-deb", "--info", deb, "conffiles"], capture_output=True,
                          text=True).stdout.split()
    contents = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True).stdout
    etc_files = sorted("/" + m for m in re.findall(r"\./(etc/\S+[^/])$", contents, re.M))
    assert etc_files and sorted(info) == etc_files, (info, etc_files)
    assert re.search(r"^-rw------- root/root .* \./etc/bus/secrets\.env$", contents, re.M)

    # dpkg itself installs it into a scratch root (its own database there; the maintainer
    # scripts run with DPKG_ROOT set and touch nothing on this machine), then purges it.
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(f"{root}/var/lib/dpkg/info")
        os.makedirs(f"{root}/var/lib/dpkg/updates")
        open(f"{root}/var/lib/dpkg/status", "w").close()
        dpkg = ["dpkg", f"--root={root}", "--force-script-chrootless", "--log=/dev/null"]
        r = subprocess.run(dpkg + ["--force-depends", "-i", deb], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        st = subprocess.run(dpkg + ["-s", "bus-account-security"], capture_output=True,
                            text=True).stdout
        assert "Status: install ok installed" in st, st
        for p in PROGRAMS:
            assert os.access(f"{root}/usr/bin/{p}", os.X_OK), p
        for u in UNITS:
            text = open(f"{root}/lib/systemd/system/{u}.service").read()
            assert f"ExecStart=/usr/bin/{u} --config /etc/bus/{u}.json" in text, u
            assert "WorkingDirectory=/usr/share/bus" in text, u
        assert os.path.isdir(f"{root}/var/lib/GeoIP")
        r = subprocess.run(dpkg + ["-P", "bus-account-security"], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        left = [p for p in glob.glob(f"{root}/**", recursive=True)
                if os.path.isfile(p) and "/var/lib/dpkg/" not in p]
        assert not left, left
