-- Who a workflow acts for (DBOS's RBAC: the roles granted to its user, as a JSON array, and
-- the role its function assumed), kept so its recovery and its children act for the same
-- identity; and the custom attributes given at its start (SetWorkflowAttributes), a JSON
-- object that listings filter on. Rows from before this migration have none of them.
ALTER TABLE workflow_status ADD COLUMN authenticated_roles TEXT;
ALTER TABLE workflow_status ADD COLUMN assumed_role TEXT;
ALTER TABLE workflow_status ADD COLUMN attributes TEXT;
