-- history: why guard acted on a login (the reason codes of its account.action event), and the
-- account's own events in the player's timeline: locks, unlocks (by whom) and settings changes,
-- from guard's account.event topic (issue 24).

-- NULL for an action whose event carried no reasons (guard before reasons: the only signal was
-- "not a home country", so the API answers ["abroad"] for those).
ALTER TABLE history.actions ADD COLUMN reasons text[];

CREATE TABLE history.events (
    id         text        NOT NULL,              -- the event's ce-id: stored once
    account_id text        NOT NULL,
    ts         timestamptz NOT NULL,
    kind       text        NOT NULL,              -- locked | unlocked | settings_changed
    actor      text        NOT NULL,              -- policy | player | support
    change     text,                              -- settings_changed: what changed
    login_id   text,                              -- locked by the policy: the login
    PRIMARY KEY (account_id, id)
);
CREATE INDEX events_account_ts ON history.events (account_id, ts DESC, id DESC);

-- Retention as before, and the events forgotten as old as the logins.
CREATE OR REPLACE FUNCTION history.maintain(retention_days int, days_ahead int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    cutoff date := today - retention_days;
    part record;
    dropped int := 0;
BEGIN
    FOR i IN 0..days_ahead LOOP
        PERFORM history.ensure_partition(today + i);
    END LOOP;
    FOR part IN
        SELECT c.relname FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'history.logins'::regclass AND c.relname ~ '^logins_p[0-9]{8}$'
    LOOP
        IF to_date(substr(part.relname, 9), 'YYYYMMDD') + 1 <= cutoff THEN
            EXECUTE format('DROP TABLE history.%I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    DELETE FROM history.actions WHERE ts < (cutoff::timestamp AT TIME ZONE 'UTC');
    DELETE FROM history.events WHERE ts < (cutoff::timestamp AT TIME ZONE 'UTC');
    RETURN dropped;
END $$;
