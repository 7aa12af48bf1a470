"""The admin HTTP server and its dashboard (SPEC §8): off unless configured."""

from perdure.admin.server import AdminServer

__all__ = ["AdminServer"]
