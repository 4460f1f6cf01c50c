-- guard: contacts take effect only once confirmed, messages guard sends itself, and an audit
-- trail of every settings change (issue 19: settings a hijacker cannot quietly change).
--
-- guard.accounts.email/phone hold only contacts in effect: set before this migration (kept: they
-- were in use), or confirmed with the code sent to them since.

-- A contact change waiting for its code: only a salted SHA-256 of the code is kept, as for
-- unlock codes.
CREATE TABLE guard.pending_contacts (
    account_id text        NOT NULL,
    channel    text        NOT NULL CHECK (channel IN ('email', 'sms')),
    value      text        NOT NULL,
    salt       text        NOT NULL,
    hash       text        NOT NULL,
    expires_at timestamptz NOT NULL,
    attempts   integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, channel)
);

-- Messages to players that guard sends on its own (contact codes, notices of changes and staff
-- unlocks): written in the transaction of the change they tell of, published to the bus's
-- notification topic by guard's relay, deleted once the publisher acknowledged them. A code in
-- an event here is sealed for notify.
CREATE TABLE guard.outbox (
    id         bigserial   PRIMARY KEY,
    event_id   text        NOT NULL UNIQUE,  -- ce-id and dedupe key: a republished row is one message
    event      text        NOT NULL,         -- the notification event (JSON)
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The audit trail now records the player's own settings changes besides staff actions.
ALTER TABLE guard.audit ALTER COLUMN staff DROP NOT NULL;
ALTER TABLE guard.audit ADD COLUMN actor text NOT NULL DEFAULT 'staff'
    CHECK (actor IN ('staff', 'player'));

-- First statement of a transaction that must not change a locked account's contacts or weaken
-- its policy: takes the account's row lock (a lock by the policy updates that row, so the two
-- serialize) and fails with 'account_locked' when it is locked.
CREATE FUNCTION guard.assert_unlocked(acct text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    is_locked boolean;
BEGIN
    SELECT locked INTO is_locked FROM guard.accounts WHERE account_id = acct FOR UPDATE;
    IF is_locked THEN
        RAISE EXCEPTION 'account_locked';
    END IF;
END $$;
