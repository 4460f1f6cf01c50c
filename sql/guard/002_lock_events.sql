-- guard: the lock history of each account (for the support console): every lock by the policy and
-- every unlock, by the player's code or by staff. Rows are few (one per lock/unlock) and kept.

CREATE TABLE guard.lock_events (
    id         bigserial   PRIMARY KEY,
    ts         timestamptz NOT NULL DEFAULT now(),
    account_id text        NOT NULL,
    event      text        NOT NULL CHECK (event IN ('locked', 'unlocked')),
    actor      text        NOT NULL CHECK (actor IN ('policy', 'code', 'staff')),
    staff      text,      -- actor staff: who
    reason     text,      -- actor staff: why
    login_id   text,      -- event locked: the login that triggered it
    country    text,
    ip         text
);
CREATE INDEX lock_events_account ON guard.lock_events (account_id, ts DESC, id DESC);

-- What happened before this table existed: locks from the decisions, staff unlocks from the audit
-- (unlocks by code left no trace).
INSERT INTO guard.lock_events (ts, account_id, event, actor, login_id, country, ip)
SELECT created_at, account_id, 'locked', 'policy', login_id, event::json ->> 'country',
       event::json ->> 'ip'
FROM guard.decisions WHERE action = 'lock';
INSERT INTO guard.lock_events (ts, account_id, event, actor, staff, reason)
SELECT ts, account_id, 'unlocked', 'staff', staff, reason FROM guard.audit WHERE action = 'unlock';
