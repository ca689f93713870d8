-- Triggers may run a script instead of calling a webhook (issue #14): handler_kind
-- takes 'script', and handler_url becomes handler_target (a webhook's URL or a
-- script's name); source_kind also takes 'cron' for scheduled triggers.
ALTER TABLE triggers RENAME COLUMN handler_url TO handler_target;
ALTER TABLE triggers DROP CONSTRAINT triggers_handler_kind_check;
ALTER TABLE triggers ADD CONSTRAINT triggers_handler_kind_check
    CHECK (handler_kind IN ('webhook', 'script'));
ALTER TABLE triggers DROP CONSTRAINT triggers_source_kind_check;
ALTER TABLE triggers ADD CONSTRAINT triggers_source_kind_check
    CHECK (source_kind IN ('topic', 'dead_letter', 'cron'));
