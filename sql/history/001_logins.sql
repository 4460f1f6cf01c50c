-- history: every login once (idempotent on the event id), partitioned by UTC day so retention is
-- a DROP of old partitions, not a DELETE. Applied by db_migrate() at start (history schema).

CREATE TABLE history.logins (
    id         text        NOT NULL,            -- login_id: the login event's ce-id
    ts         timestamptz NOT NULL,            -- when the player logged in (event "ts")
    account_id text        NOT NULL,
    ip         text        NOT NULL,
    country    text        NOT NULL,
    server     text,
    session_id text,
    client     text,
    stored_at  timestamptz NOT NULL DEFAULT now(),
    -- The partition key must be part of a unique key; a redelivered event carries the same ts, so
    -- (id, ts) is as good as id for idempotency.
    PRIMARY KEY (id, ts)
) PARTITION BY RANGE (ts);

CREATE INDEX logins_account_ts ON history.logins (account_id, ts DESC, id DESC);

-- The action guard took for a login (account.action events). A table of its own so that an action
-- arriving before its login (the two come through different routes) is kept, and the final state
-- is right whichever lands first; the API joins it.
CREATE TABLE history.actions (
    login_id   text        PRIMARY KEY,
    account_id text        NOT NULL,
    action     text        NOT NULL,
    ts         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX actions_ts ON history.actions (ts);

-- Creates the partition holding day d (UTC) when missing. Safe under concurrency.
CREATE FUNCTION history.ensure_partition(d date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    name text := 'logins_p' || to_char(d, 'YYYYMMDD');
BEGIN
    IF to_regclass('history.' || name) IS NOT NULL THEN
        RETURN;
    END IF;
    BEGIN
        EXECUTE format('CREATE TABLE history.%I PARTITION OF history.logins '
                       'FOR VALUES FROM (%L) TO (%L)', name,
                       (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
    EXCEPTION WHEN duplicate_table OR unique_violation THEN
        NULL; -- created concurrently by another instance
    END;
END $$;

-- Partitions for the days of the given timestamps (called before each batch insert).
CREATE FUNCTION history.ensure_partitions(tss timestamptz[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d date;
BEGIN
    FOR d IN SELECT DISTINCT (t AT TIME ZONE 'UTC')::date FROM unnest(tss) AS t LOOP
        PERFORM history.ensure_partition(d);
    END LOOP;
END $$;

-- Retention: creates today's and the next days_ahead partitions, drops partitions entirely older
-- than retention_days, forgets actions as old. Returns the number of partitions dropped.
CREATE FUNCTION history.maintain(retention_days int, days_ahead int) RETURNS int LANGUAGE plpgsql AS $$
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
        -- partition day d holds [d, d+1): entirely older than the cutoff when d + 1 <= cutoff
        IF to_date(substr(part.relname, 9), 'YYYYMMDD') + 1 <= cutoff THEN
            EXECUTE format('DROP TABLE history.%I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    DELETE FROM history.actions WHERE ts < (cutoff::timestamp AT TIME ZONE 'UTC');
    RETURN dropped;
END $$;
