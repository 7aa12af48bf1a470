"""Web frameworks DBOS(fastapi=..., flask=...) attaches to (DBOS 2.x's integration)."""
