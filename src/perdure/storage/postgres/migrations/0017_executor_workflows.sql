-- The workflows each launched process registers (a JSON array of their names), refreshed by
-- its heartbeat when it registers more: what tells a workflow no live process can run (a
-- stranded one, `perdure workflow stranded`). NULL in a row of an older Perdure: unknown.
ALTER TABLE perdure.executors ADD COLUMN workflow_names TEXT;
