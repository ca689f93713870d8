-- PostgreSQL's 0010 leaves half of each new outbox page free so that the dispatcher's
-- claims update rows in place (HOT). SQLite has no such setting. This file keeps the two
-- backends' migration numbers in step.
SELECT 1;
