-- Indexes for listing workflows: each common filter, in creation order, without a full scan.
CREATE INDEX workflow_status_status ON workflow_status (status, created_at);
CREATE INDEX workflow_status_name ON workflow_status (name, created_at);
CREATE INDEX workflow_status_queue ON workflow_status (queue_name, created_at) WHERE queue_name IS NOT NULL;
-- Unfinished queued workflows (queue depth, running counts, list_queued_workflows): few rows.
CREATE INDEX workflow_status_queue_active ON workflow_status (created_at) WHERE queue_name IS NOT NULL AND status IN ('PENDING', 'ENQUEUED');
-- Children of a workflow, for cascading cancel and delete (0002 may already have created it).
CREATE INDEX IF NOT EXISTS workflow_status_parent ON workflow_status (parent_workflow_id) WHERE parent_workflow_id IS NOT NULL;
