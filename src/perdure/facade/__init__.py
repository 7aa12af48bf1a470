"""The parts of the `DBOS` facade, one module per domain, combined in `perdure.dbos`."""
