-- Every query of pending outbox rows by due time reads outbox_pending_order (0009), which
-- holds pending rows only; no query reads delivered or dead rows by due time. outbox_due
-- (state, next_attempt_at) was kept up for nothing: an entry written for each published
-- row and again for each finished delivery (the update that changes `state` cannot be a
-- HOT update).
DROP INDEX IF EXISTS outbox_due;
