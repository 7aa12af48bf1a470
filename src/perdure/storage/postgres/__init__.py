"""PostgreSQL backend of the system store."""
