-- The owner token of the execution a message was handed to: PostgreSQL's signed hand-off
-- notification names it (SQLite has no notifications; the column keeps one schema for both).
ALTER TABLE notifications ADD COLUMN handed_token INTEGER;
