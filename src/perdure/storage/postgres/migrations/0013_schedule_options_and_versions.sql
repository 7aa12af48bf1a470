-- What DBOS 3.4's run-time schedules add: an ID that tells a recreated schedule from the old
-- one, the time of the last tick started (epoch ms; automatic backfill resumes after it),
-- whether to start the ticks missed while no process ran, the IANA zone the cron expression
-- is read in (NULL: UTC), and the queue its runs are enqueued on (NULL: started directly).
ALTER TABLE perdure.schedules ADD COLUMN schedule_id TEXT;
UPDATE perdure.schedules SET schedule_id = gen_random_uuid()::TEXT;
ALTER TABLE perdure.schedules ALTER COLUMN schedule_id SET NOT NULL;
ALTER TABLE perdure.schedules ADD COLUMN last_fired_at BIGINT;
ALTER TABLE perdure.schedules ADD COLUMN automatic_backfill BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE perdure.schedules ADD COLUMN cron_timezone TEXT;
ALTER TABLE perdure.schedules ADD COLUMN queue_name TEXT;

-- Application versions, each registered by the first launch that runs it. The one with the
-- newest version_timestamp is the latest (set_latest_application_version moves it there):
-- it alone dequeues unversioned workflows and starts schedule ticks.
CREATE TABLE perdure.application_versions (
    version_name TEXT PRIMARY KEY,
    version_id TEXT NOT NULL,
    version_timestamp BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX application_versions_latest ON perdure.application_versions (version_timestamp DESC, created_at DESC, version_name DESC);
