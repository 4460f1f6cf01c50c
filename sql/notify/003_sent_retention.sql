-- notify: the sent log is trimmed by age (retention.sent_days, lib/retention.c).
CREATE INDEX sent_sent_at ON notify.sent (sent_at);
