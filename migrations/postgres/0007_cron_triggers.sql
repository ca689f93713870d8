-- Cron triggers (issue #14): a `cron` trigger's schedule, the zone it is read in, what
-- it does about missed ticks, and its next tick (the ticker fires a trigger by moving
-- cron_next_at from the due tick to the next in the same transaction as the tick's
-- outbox row, so one node wins). A tick's outbox row has topic '' and the tick's time
-- as its seq; the unique index keeps each (trigger, tick) to one row.
ALTER TABLE triggers ADD COLUMN cron_schedule TEXT;
ALTER TABLE triggers ADD COLUMN cron_timezone TEXT;
ALTER TABLE triggers ADD COLUMN cron_catch_up TEXT;
ALTER TABLE triggers ADD COLUMN cron_next_at BIGINT;
CREATE INDEX triggers_cron_due ON triggers(cron_next_at) WHERE source_kind = 'cron';
CREATE UNIQUE INDEX outbox_cron_tick ON outbox(trigger_id, seq) WHERE topic = '';
