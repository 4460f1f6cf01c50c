-- campaign: the accounts on each campaign list (loaded from config at start) and the accounts
-- already sent their message (once per account and campaign). Applied by db_migrate() at start.
CREATE TABLE campaign.targets (
    campaign   text NOT NULL,
    account_id text NOT NULL,
    PRIMARY KEY (campaign, account_id)
);

CREATE TABLE campaign.sent (
    campaign   text        NOT NULL,
    account_id text        NOT NULL,
    login_id   text        NOT NULL,  -- the login that triggered the message (redelivery = same)
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign, account_id)
);
