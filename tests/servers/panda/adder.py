"""Run the server's Adder (the add_main daemon body) once, so jobs in `holding` are archived (server venv)."""

import os
import sys

port = sys.argv[1] if len(sys.argv) > 1 else "25080"
for var in ("PANDA_URL", "PANDA_URL_SSL", "PANDACACHE_URL"):
    os.environ.setdefault(var, f"http://127.0.0.1:{port}/server/panda")
os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")

from pandaserver.daemons.scripts import add_main  # noqa: E402

add_main.main(argv=["add_main", "0", "2"])
