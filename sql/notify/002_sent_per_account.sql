-- notify: a message is sent once per (account, dedupe key, channel). The dedupe key is an event
-- id a producer chooses, so two accounts may share one; keyed by it alone, the second account's
-- message was skipped as already sent.
ALTER TABLE notify.sent DROP CONSTRAINT sent_pkey;
ALTER TABLE notify.sent ADD PRIMARY KEY (account_id, dedupe_key, channel);
