-- The dispatcher claims the oldest due rows: pending ones in (next_attempt_at, id) order,
-- a few dozen at a time. This index holds only pending rows, in that order, so a claim
-- reads the rows it takes instead of sorting the whole backlog each time.
CREATE INDEX outbox_pending_order ON outbox(next_attempt_at, id) WHERE state = 'pending';
