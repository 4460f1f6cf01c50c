-- guard: failed logins (topic login.failed) counted per account and per source address, for
-- brute-force throttling (services/guard/throttle.c, docs/services/guard.md "Failed logins").
-- One row per (kind, key): the failures since the count last started, the last one's time and,
-- once the count reached the threshold, until when logins are refused. Kept in PostgreSQL so a
-- throttle outlives a restart of guard (loaded into memory at start).
CREATE TABLE guard.failures (
    kind text NOT NULL CHECK (kind IN ('account', 'address')),
    key text NOT NULL,
    failures integer NOT NULL,
    last_at timestamptz NOT NULL,
    locked_until timestamptz,
    PRIMARY KEY (kind, key)
);

-- Failed-login events already counted (by event id), so a redelivered one is not counted twice;
-- trimmed once older than a day (the bus retries within minutes).
CREATE TABLE guard.failure_events (
    id text PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX failure_events_at ON guard.failure_events (at);

-- The countries each account logged in from, with the last time (the login's own ts): whether a
-- login's country is new for the account (not seen in signals.new_country_days) and where the
-- account's previous login was (impossible travel). Logins from home countries are recorded too
-- (they are the usual previous login). Trimmed past the new-country window.
CREATE TABLE guard.login_countries (
    account_id text NOT NULL,
    country text NOT NULL,
    last_at timestamptz NOT NULL,
    PRIMARY KEY (account_id, country)
);
CREATE INDEX login_countries_last_at ON guard.login_countries (last_at);
