"""An application that (wrongly) launches Perdure when imported."""

from __future__ import annotations

import os

from perdure import DBOS

DBOS(config={"name": "launches", "system_database_url": os.environ["LAUNCHES_URL"]})
DBOS.launch()
