-- PostgreSQL's 0009 adds an index of pending outbox rows in (next_attempt_at, id) order
-- for the dispatcher's claim. SQLite needs none: outbox_due (state, next_attempt_at) ends
-- with the rowid, which is `id`, so it already gives that order. This file keeps the
-- two backends' migration numbers in step.
SELECT 1;
