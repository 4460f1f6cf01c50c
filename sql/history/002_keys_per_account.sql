-- history: logins and actions are keyed by (account, login id). The login id is the ce-id a login
-- server chooses, so two accounts may share one; keyed by it alone, the second account's login was
-- dropped as a duplicate of the first and the first's action was shown on the second's row.
-- Applies to an existing database (the partitions follow the parent's key).
ALTER TABLE history.logins DROP CONSTRAINT logins_pkey;
ALTER TABLE history.logins ADD PRIMARY KEY (account_id, id, ts);

ALTER TABLE history.actions DROP CONSTRAINT actions_pkey;
ALTER TABLE history.actions ADD PRIMARY KEY (account_id, login_id);
