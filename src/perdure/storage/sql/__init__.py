"""The SQL of the system store by domain, written once for both backends (see `Dialect`)."""
