-- A claim updates each outbox row once (attempts, lease) before its final update, and
-- none of those columns is indexed: with room left on the row's page the new version
-- goes on the same page with no index entries (a HOT update). Rows are inserted in bulk
-- and pages filled to the brim left no room, so every claim wrote a new entry into each
-- of the table's seven indexes. Half of each new page is now left free: a claim of 48
-- rows of a 20,000-row backlog took a third of the time in a test.
ALTER TABLE outbox SET (fillfactor = 50);
