-- Indexes for listing workflows: each common filter, in creation order, without a full scan.
CREATE INDEX workflow_status_status ON perdure.workflow_status (status, created_at);
CREATE INDEX workflow_status_name ON perdure.workflow_status (name, created_at);
CREATE INDEX workflow_status_queue ON perdure.workflow_status (queue_name, created_at) WHERE queue_name IS NOT NULL;
-- Unfinished queued workflows (queue depth, running counts, list_queued_workflows): few rows.
CREATE INDEX workflow_status_queue_active ON perdure.workflow_status (created_at) WHERE queue_name IS NOT NULL AND status IN ('PENDING', 'ENQUEUED');
-- Workflow-ID prefix search (LIKE 'abc%'): the default collation is not byte order, so the
-- primary key cannot serve it.
CREATE INDEX workflow_status_id_pattern ON perdure.workflow_status (workflow_id text_pattern_ops);
-- Children of a workflow, for cascading cancel and delete (0002 may already have created it).
CREATE INDEX IF NOT EXISTS workflow_status_parent ON perdure.workflow_status (parent_workflow_id) WHERE parent_workflow_id IS NOT NULL;
