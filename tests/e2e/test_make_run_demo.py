"""`make run` shows a newcomer every guard action within a minute (issue 24): the demo players of
config/demo/players.txt (one per policy, Korean and English) log in through loginsim, which asks
guard before each login and opens the game session of each admitted one on gamesim. Seen from
the game server and the login server: a kick ends a live session and says why, a lock ends the
account's sessions, logins guard refuses (locked, blocked abroad) never start, and in-game
messages reach live sessions. Every campaign of config/campaign/ runs, each on its own port, and
password-2026's email reaches the demo players whose email tools/seed.sh confirmed.

Binds the product's fixed ports: run it in a network namespace of its own,
`unshare -n sh -c 'ip link set lo up && make test TESTS=test_make_run_demo ASAN=0'`."""
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

import harness

ASAN = False
# The product's fixed ports: one at a time with the other modules that bind them
# (tests/run.py; test_make_run, test_make_run_stop). Without it, a full run once started this
# module beside them and its PostgreSQL found port 55432 taken.
SERIAL_GROUP = "make-in-tree"
ROOT = harness.ROOT
PORTS = [8080, 8081, 8101, 8102, 8103, 8104, 8105, 8106, 8109, 9092, 55432]
GS_AUTH = {"Authorization": "Bearer dev-only-gamesim-admin-token"}


def sessions(account):
    req = urllib.request.Request(f"http://127.0.0.1:8109/v1/sessions?account_id={account}",
                                 headers=GS_AUTH)
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())["sessions"]


def test_make_run_shows_every_action_within_a_minute():
    busy = [p for p in PORTS if harness.tcp_open(p)]
    if busy:
        raise harness.Skip(f"ports {busy} are in use (is `make run` running?)")
    with tempfile.TemporaryDirectory() as var:
        env = dict(os.environ, RUN_VAR=var)
        env.pop("LOGINSIM_RATE", None)  # the default rate, as a newcomer runs it
        proc = subprocess.Popen([os.path.join(ROOT, "tools", "run.sh")], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        lines = []

        def read():
            for raw in proc.stdout:
                lines.append(raw.decode(errors="replace"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            def up():
                assert proc.poll() is None, "tools/run.sh exited:\n" + "".join(lines)
                return "The product is running" in "".join(lines)
            harness.wait_for(up, 120 * harness.timeout_mult(), what="make run up", interval=0.2)
            out = "".join(lines)
            assert "campaign-password-2026" in out and "campaign-contacts-2026" in out, out
            for port in (8105, 8106):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                    assert r.status == 200
            t0 = time.monotonic()
            loginsim_log = os.path.join(var, "log", "loginsim.log")

            def ended(prefix, reason):
                return [s for lang in ("ko", "en") for s in sessions(f"{prefix}-{lang}")
                        if s["end_reason"] == reason and s["end_message"]]

            def refused(prefix):
                text = open(loginsim_log).read() if os.path.exists(loginsim_log) else ""
                return f"login of {prefix}-" in text and "refused by guard" in text

            want = {
                "kick ends a session and says why": lambda: ended("demo-kick", "kick"),
                "lock ends the account's sessions": lambda: ended("demo-lock", "lock"),
                "in-game message reaches a live session": lambda: [
                    s for lang in ("ko", "en") for s in sessions(f"demo-notify-{lang}")
                    if s["messages"]],
                "block_abroad refuses logins from abroad": lambda: refused("demo-block"),
                "a locked account's logins are refused": lambda: refused("demo-lock"),
            }
            outbox = os.path.join(var, "outbox")

            def campaign_emails(account):
                """The campaign's emails to the demo player's confirmed address (seeded by
                tools/seed.sh): notify asked guard for it, the event carried none."""
                out = []
                for name in os.listdir(outbox) if os.path.isdir(outbox) else []:
                    if not name.endswith(".eml"):
                        continue
                    with open(os.path.join(outbox, name), encoding="utf-8") as f:
                        text = f.read()
                    if f"To: {account}@example.com" in text and \
                            "X-Notify-Kind: campaign_password" in text:
                        out.append(text)
                return out

            want["a campaign's email reaches the confirmed address"] = lambda: \
                campaign_emails("demo-notify-ko") and campaign_emails("demo-notify-en")
            for what, seen in want.items():
                harness.wait_for(seen, 75 * harness.timeout_mult(), what=what, interval=1)
            took = time.monotonic() - t0
            print(f"every action seen {took:.0f} s after make run was up")
            # once per player, in the player's language (guard's, given with the contacts)
            assert len(campaign_emails("demo-notify-ko")) == 1
            assert "비밀번호" in campaign_emails("demo-notify-ko")[0]
            assert "set a new password" in campaign_emails("demo-notify-en")[0]
            # each player is told in the language of their game client (config/demo/players.txt)
            for s in ended("demo-kick", "kick") + ended("demo-lock", "lock"):
                assert s["ended_at"] >= s["started_at"], s
                english = s["end_message"].startswith(("You were", "Your account"))
                assert english == s["account_id"].endswith("-en"), s
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
            reader.join(timeout=5)
        assert rc == 0, "tools/run.sh did not stop cleanly:\n" + "".join(lines)
        left = [p for p in PORTS if harness.tcp_open(p)]
        assert not left, f"still listening after SIGTERM: {left}\n" + "".join(lines)
