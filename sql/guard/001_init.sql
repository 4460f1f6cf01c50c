-- guard: per-account policy and state, decisions (idempotency per login), unlock codes (hashed),
-- and the audit of staff actions. Applied by db_migrate() at start (guard schema).

CREATE TABLE guard.accounts (
    account_id text        PRIMARY KEY,
    policy     text        NOT NULL DEFAULT 'none'
               CHECK (policy IN ('none', 'notify', 'kick', 'block_abroad', 'lock')),
    channels   text        NOT NULL DEFAULT '["ingame"]',  -- JSON array
    email      text,
    phone      text,
    locked     boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Countries an account allows besides the home countries; until NULL = for good.
CREATE TABLE guard.allowed (
    account_id text        NOT NULL,
    country    text        NOT NULL,
    until      timestamptz,
    PRIMARY KEY (account_id, country)
);

-- One row per login that led to an action: a redelivered login gets the same answer.
CREATE TABLE guard.decisions (
    login_id   text        PRIMARY KEY,
    account_id text        NOT NULL,
    action     text        NOT NULL,
    event      text        NOT NULL,  -- the account.action event without the code
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The pending unlock code of a locked account: only a salted SHA-256 of it is stored.
CREATE TABLE guard.codes (
    account_id text        PRIMARY KEY,
    login_id   text        NOT NULL,
    salt       text        NOT NULL,
    hash       text        NOT NULL,
    expires_at timestamptz NOT NULL,
    attempts   integer     NOT NULL DEFAULT 0
);

CREATE TABLE guard.audit (
    id         bigserial   PRIMARY KEY,
    ts         timestamptz NOT NULL DEFAULT now(),
    staff      text        NOT NULL,
    action     text        NOT NULL,
    account_id text        NOT NULL,
    reason     text        NOT NULL
);
CREATE INDEX audit_account ON guard.audit (account_id, id DESC);
