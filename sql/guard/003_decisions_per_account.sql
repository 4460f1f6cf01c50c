-- guard: a decision is keyed by (account, login id), not by the login id alone. The login id is
-- the ce-id a login server chooses, so two accounts may share one: keyed by it alone, account B's
-- login was answered with account A's decision (and A's code). Applies to an existing database:
-- the old key's rows stay valid under the new one (a login id had at most one row).
ALTER TABLE guard.decisions DROP CONSTRAINT decisions_pkey;
ALTER TABLE guard.decisions ADD PRIMARY KEY (account_id, login_id);
