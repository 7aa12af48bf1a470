-- What DBOS 3.4's run-time schedules add: an ID that tells a recreated schedule from the old
-- one, the time of the last tick started (epoch ms; automatic backfill resumes after it),
-- whether to start the ticks missed while no process ran, the IANA zone the cron expression
-- is read in (NULL: UTC), and the queue its runs are enqueued on (NULL: started directly).
-- SQLite cannot add a NOT NULL column without a default: the code always sets schedule_id.
ALTER TABLE schedules ADD COLUMN schedule_id TEXT;
UPDATE schedules SET schedule_id = lower(hex(randomblob(16)));
ALTER TABLE schedules ADD COLUMN last_fired_at INTEGER;
ALTER TABLE schedules ADD COLUMN automatic_backfill INTEGER NOT NULL DEFAULT 0;
ALTER TABLE schedules ADD COLUMN cron_timezone TEXT;
ALTER TABLE schedules ADD COLUMN queue_name TEXT;

-- Application versions, each registered by the first launch that runs it. The one with the
-- newest version_timestamp is the latest (set_latest_application_version moves it there):
-- it alone dequeues unversioned workflows and starts schedule ticks.
CREATE TABLE application_versions (
    version_name TEXT PRIMARY KEY,
    version_id TEXT NOT NULL,
    version_timestamp INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX application_versions_latest ON application_versions (version_timestamp DESC, created_at DESC, version_name DESC);
