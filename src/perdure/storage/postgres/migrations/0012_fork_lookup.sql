-- send(..., send_to_forks=True) walks from a workflow to those forked from it, and on to their
-- forks: an index on forked_from makes each step of that walk a lookup, not a scan.
CREATE INDEX workflow_status_forked_from ON perdure.workflow_status (forked_from) WHERE forked_from IS NOT NULL;
