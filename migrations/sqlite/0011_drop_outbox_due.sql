-- PostgreSQL's 0011 drops outbox_due, which its partial index outbox_pending_order made
-- redundant. SQLite's claims read outbox_due (it has no such partial index), so it stays.
-- This file keeps the two backends' migration numbers in step.
SELECT 1;
