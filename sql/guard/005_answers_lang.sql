-- guard: "was it you?" answers to alerts, and the player's language and time zone (issue 24).

-- The language (ko|en) and time zone (IANA name) of every message to the player; NULL = the
-- deployment's default (default_lang; the zone of the language, tz.ko / tz.en).
ALTER TABLE guard.accounts ADD COLUMN lang text CHECK (lang IN ('ko', 'en'));
ALTER TABLE guard.accounts ADD COLUMN tz text;

-- One row per alert that carries a "was it you?" link: only the SHA-256 of the link's token is
-- kept (the token itself travels sealed for notify). answer is written once: a second answer, or
-- one after expires_at, is refused (410).
CREATE TABLE guard.answers (
    token_hash  text        PRIMARY KEY,
    account_id  text        NOT NULL,
    login_id    text        NOT NULL,
    action      text        NOT NULL,  -- what guard did about the login
    country     text        NOT NULL,
    ip          text        NOT NULL,
    server      text,
    login_ts    text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    answer      text        CHECK (answer IN ('me', 'not_me')),
    secured     text,                  -- not_me: what was done (lock, end_sessions)
    allow_until timestamptz,           -- me: the country allowed until then
    allowed     boolean     NOT NULL DEFAULT false,  -- me: the country was allowed
    answered_at timestamptz
);
CREATE INDEX answers_account ON guard.answers (account_id, created_at DESC);

-- guard's outbox now also carries account.action events (a "not me" ends the sessions).
ALTER TABLE guard.outbox ADD COLUMN topic text NOT NULL DEFAULT 'notification';

-- A player who answers "not me" locks the account themselves.
ALTER TABLE guard.lock_events DROP CONSTRAINT IF EXISTS lock_events_actor_check;
ALTER TABLE guard.lock_events ADD CONSTRAINT lock_events_actor_check
    CHECK (actor IN ('policy', 'code', 'staff', 'player'));

-- A login's time as the player reads it: in zone tz, with its offset; NULL when ts or tz does not
-- parse (the message then shows the login's own time).
CREATE FUNCTION guard.local_time(ts text, tz text) RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    t   timestamptz;
    off interval;
BEGIN
    t := ts::timestamptz;
    off := (t AT TIME ZONE tz) - (t AT TIME ZONE 'UTC');
    RETURN to_char(t AT TIME ZONE tz, 'YYYY-MM-DD HH24:MI') || ' (UTC' ||
           CASE WHEN off < interval '0' THEN '-' ELSE '+' END ||
           to_char(CASE WHEN off < interval '0' THEN -off ELSE off END, 'HH24:MI') || ')';
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- First statement of an answer's transaction: records the answer on the alert's row, once. Fails
-- with 'answer_gone' when the row was answered meanwhile or has expired, so the answer's effects
-- (lock, sessions ended, country allowed) happen at most once per link.
CREATE FUNCTION guard.answer_claim(h text, ans text, sec text, allow_days int) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE guard.answers SET answer = ans, secured = sec,
        allow_until = CASE WHEN allow_days > 0 THEN now() + make_interval(days => allow_days) END,
        allowed = allow_days > 0, answered_at = now()
    WHERE token_hash = h AND answer IS NULL AND expires_at > now();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'answer_gone';
    END IF;
END $$;
