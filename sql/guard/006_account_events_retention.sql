-- guard: the account's own events for the player's timeline (issue 24), support's ticket
-- references, and indexes for retention.
--
-- Every lock and unlock (guard.lock_events) and every settings change (guard.audit, other than
-- the lock and unlock entries that lock_events already tells of) is also queued in the outbox as
-- an account.event (config/schema/events/account.event.json) for the bus's account.event topic:
-- history shows them in the player's timeline. Triggers, so that every writer of those tables
-- (the policy, the player's code, "not me", support) publishes in the same transaction without
-- knowing of it.

-- (guard.outbox's topic column comes with 005_answers_lang.sql.)
ALTER TABLE guard.audit ADD COLUMN ticket text;

CREATE FUNCTION guard.account_event(acct text, ts timestamptz, kind text, actor text,
                                    change text, login text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO guard.outbox (event_id, topic, event)
    VALUES (gen_random_uuid()::text, 'account.event', json_strip_nulls(json_build_object(
        'account_id', acct,
        'ts', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'kind', kind,
        'by', CASE actor WHEN 'policy' THEN 'policy' WHEN 'staff' THEN 'support'
                         ELSE 'player' END,
        'change', change,
        'login_id', login))::text);
END $$;

CREATE FUNCTION guard.lock_event_published() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM guard.account_event(NEW.account_id, NEW.ts, NEW.event, NEW.actor, NULL, NEW.login_id);
    RETURN NEW;
END $$;
CREATE TRIGGER lock_events_published AFTER INSERT ON guard.lock_events
    FOR EACH ROW EXECUTE FUNCTION guard.lock_event_published();

CREATE FUNCTION guard.audit_published() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.action NOT IN ('lock', 'unlock') THEN
        PERFORM guard.account_event(NEW.account_id, NEW.ts, 'settings_changed', NEW.actor,
                                    NEW.action, NULL);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_published AFTER INSERT ON guard.audit
    FOR EACH ROW EXECUTE FUNCTION guard.audit_published();

-- retention deletes the oldest rows in small batches (lib/retention.c)
CREATE INDEX decisions_created ON guard.decisions (created_at);
CREATE INDEX audit_ts ON guard.audit (ts);
CREATE INDEX lock_events_ts ON guard.lock_events (ts);
CREATE INDEX outbox_created ON guard.outbox (created_at);
