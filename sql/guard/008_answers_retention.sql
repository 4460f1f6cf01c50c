-- guard: the alerts' "was it you?" rows are trimmed by retention (retention.answers_days) like
-- every other growing table; the index serves its batched deletes.
CREATE INDEX answers_created ON guard.answers (created_at);
