"""Fault injection between Perdure and PostgreSQL: a proxy that cuts, partitions and lies."""
