-- notify: what was sent, so each message goes out once. Key: the event id (or the event's
-- dedupe_key) plus the channel; a row is written only after the provider accepted the message.
CREATE TABLE notify.sent (
    dedupe_key text        NOT NULL,
    channel    text        NOT NULL,
    account_id text        NOT NULL,
    kind       text        NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dedupe_key, channel)
);
