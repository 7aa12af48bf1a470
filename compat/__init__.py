"""Compatibility tooling: how far Perdure is a drop-in for the DBOS Transact API.

``python -m compat table | starter | dbos-tests``; see ``__main__.py``. dbos is installed only
into virtualenvs of this tooling's cache (``venvs.py``), never into Perdure's environment.
"""
