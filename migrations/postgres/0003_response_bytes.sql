-- The size of each webhook response's body, kept for every reader (issue #11): with
-- app:read only, the body itself is never shown, but its status and length are.
ALTER TABLE delivery_attempts ADD COLUMN response_bytes BIGINT;
