"""The ``perdure`` command line: the only part of Perdure that writes to stdout."""
