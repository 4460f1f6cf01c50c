-- campaign: when each campaign starts (config "start", services/campaign/start.c). Logins from
-- before it are not part of the campaign: a new campaign's route reads the whole retained topic.
-- starts_at = '-infinity': every login still in the topic counts (start "backfill").
CREATE TABLE campaign.campaigns (
    campaign  text        PRIMARY KEY,
    starts_at timestamptz NOT NULL
);
