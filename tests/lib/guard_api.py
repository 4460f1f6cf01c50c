"""guard's settings API as tests drive it: a new email or phone takes effect only once the code
sent to it is confirmed (docs/services/guard.md "Contacts"), so setting contacts is a PUT, then
one confirmation per contact with the code that reached it.

Publisher stands in for the bus's publisher where guard runs alone: it records the notification
events guard's outbox relay publishes (contact codes, notices), as notify would receive them."""
import json
import threading
import uuid

import harness
import sealed
from tokens import AUTH, BUS

# Kinds of the messages guard sends on its own (beside account.action's).
GUARD_KINDS = ("contact_code", "contact_changed", "settings_changed", "staff_unlock",
               "brute_force")
GS_AUTH = {"Authorization": "Bearer dev-only-gamesim-admin-token"}  # gamesim's development token


class Publisher:
    def __init__(self, forward=None):
        """forward(topic, ce_id, event), when given, is called with each accepted event before
        it is acknowledged: a test's stand-in for the bus's routes (e.g. account.event to
        history)."""
        self.events, self.lock, self.fail = [], threading.Lock(), 0
        self.forward = forward
        self.url, _ = harness.ctx().serve(self._handle)

    def _handle(self, method, path, headers, body):
        with self.lock:
            if self.fail > 0:
                self.fail -= 1
                return 503, {"error": "unavailable"}, {"Retry-After": "1"}
        event = json.loads(body)
        if self.forward:
            topic = path.split("/")[3]  # /v1/topics/<topic>/events
            self.forward(topic, headers.get("ce-id"), event)
        with self.lock:
            self.events.append({"path": path, "auth": headers.get("authorization"),
                                "ce_id": headers.get("ce-id"), "event": event})
        return 202, {"id": str(uuid.uuid4())}, {}

    def of(self, account, kind=None, topic="notification"):
        """The events of account (of that kind) guard published to topic: notification (the
        messages to the player) or account.event (the player's timeline)."""
        with self.lock:
            return [e["event"] for e in self.events if e["event"]["account_id"] == account and
                    e["path"] == f"/v1/topics/{topic}/events" and
                    (kind is None or e["event"].get("kind") == kind)]

    def actions(self, account):
        """The account.action events guard published for account (a "not me" answer's)."""
        with self.lock:
            return [e["event"] for e in self.events if e["event"]["account_id"] == account and
                    e["path"] == "/v1/topics/account.action/events"]

    def wait(self, account, kind, n=1, topic="notification"):
        return harness.wait_for(lambda: len(self.of(account, kind, topic)) >= n and
                                self.of(account, kind, topic), 15,
                                what=f"{n} {kind} for {account} on {topic}")

    def contact_code(self, account, channel, n=1):
        """The code of the n-th contact_code event of account for channel (waits for it)."""
        def found():
            evs = [e for e in self.of(account, "contact_code")
                   if e["params"]["channel"] == channel]
            return evs[n - 1] if len(evs) >= n else None
        ev = harness.wait_for(found, 15, what=f"contact code {n} of {account} for {channel}")
        return sealed.open_sealed(ev["params"]["sealed_code"], "contact\n" + account)


def set_contacts(guard_url, account, tok, contacts, code_of):
    """PUTs contacts and confirms each new one with code_of(channel); returns the settings."""
    headers = {"Authorization": "Bearer " + tok}
    st, body, _ = harness.http("PUT", f"{guard_url}/v1/accounts/{account}/contacts", contacts,
                               headers=headers)
    assert st in (200, 202), (st, body)
    for channel in (body.get("pending", []) if st == 202 else []):
        st, body, _ = harness.http("POST", f"{guard_url}/v1/accounts/{account}/contacts/confirm",
                                   {"channel": channel, "code": code_of(channel)},
                                   headers=headers)
        assert st == 200, (channel, st, body)
    return body


def deliver_batch(svc, events, secret=BUS):
    """POSTs login.checked events to guard as one signed batch (CloudEvents batched content
    mode), as a route with "batch" > 1 does."""
    body = json.dumps([{"specversion": "1.0", "id": str(uuid.uuid4()), "type": "login.checked",
                        "source": "ipcheck", "time": "2026-11-25T06:00:00Z",
                        "traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01", "data": e}
                       for e in events]).encode()
    headers = harness.delivery_headers(secret, body, str(uuid.uuid4()), batch=True)
    return harness.http("POST", f"{svc.url}/v1/deliveries/login.checked", raw=body,
                        headers=headers)


class Downstream:
    """A real gamesim, notify and history (on db_url) behind a test's Publisher: forward() hands
    each event guard publishes to them as config/bus/product.json's routes would (account.action
    to gamesim-kick, notify-actions and history-actions, notification to notify-messages,
    account.event to history-events), signed as the dispatcher signs, and records (target,
    status, answer) in delivered. In-game messages reach gamesim."""

    def __init__(self, db_url):
        ctx = harness.ctx()
        self.gamesim = ctx.start("gamesim", env={"BUS_SIGNING_SECRET": BUS})
        gs = self.gamesim.url
        self.notify = ctx.start(
            "notify", config={"database_url": db_url, "sms_url": f"{gs}/v1/sms", "game_url": gs,
                              "provider_timeout_ms": 2000},
            env={"BUS_SIGNING_SECRET": BUS, "NOTIFY_DATABASE_URL": db_url}, ready_path="/readyz")
        self.history = ctx.start(
            "history", config={"database_url": db_url, "batch_wait_ms": 5,
                               "maintenance_interval_s": 3600},
            env={"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS, "HISTORY_DATABASE_URL": db_url},
            ready_path="/readyz")
        n, h = self.notify.url, self.history.url
        self.routes = {"account.action": [f"{gs}/v1/kick", f"{n}/v1/deliveries/account.action",
                                          f"{h}/v1/deliveries/account.action"],
                       "notification": [f"{n}/v1/deliveries/notification"],
                       "account.event": [f"{h}/v1/deliveries/account.event"]}
        self.delivered, self.lock = [], threading.Lock()

    def forward(self, topic, ce_id, event):
        body = json.dumps(event).encode()
        for target in self.routes.get(topic, []):
            headers = harness.delivery_headers(BUS, body, ce_id, topic, {"ce-source": "guard"})
            st, answer, _ = harness.http("POST", target, raw=body, headers=headers)
            with self.lock:
                self.delivered.append((target, st, answer))

    def sessions(self, account):
        """gamesim's sessions of account by session id."""
        st, body, _ = harness.http("GET", f"{self.gamesim.url}/v1/sessions?account_id={account}",
                                   headers=GS_AUTH)
        assert st == 200, (st, body)
        return {s["session_id"]: s for s in body["sessions"]}

    def received(self):
        st, body, _ = harness.http("GET", f"{self.gamesim.url}/v1/received", headers=GS_AUTH)
        assert st == 200, (st, body)
        return body

    def ingame(self, account):
        """The in-game messages notify sent to account, oldest first."""
        return [m for m in self.received()["messages"] if m["account_id"] == account]
