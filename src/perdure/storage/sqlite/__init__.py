"""SQLite backend of the system store."""
