"""The app's own sitecustomize: pyair's bootstrap must still run it (as ``sitecustomize``).

Writes what it sees as JSON to $AGENT_TEST_MARKER.
"""

import json
import os
import sys

marker = os.environ.get("AGENT_TEST_MARKER")
if marker:
    agent = next(
        (n for n in ("supervisor.agent", "_pyair_supervisor.agent") if n in sys.modules), None
    )
    supervisor = sys.modules.get("supervisor")
    if supervisor is None and agent == "_pyair_supervisor.agent":
        import supervisor  # the app's own package of that name

    with open(marker, "w", encoding="utf-8") as f:
        json.dump(
            {
                "name": __name__,
                "pid": os.getpid(),
                "file": __file__,
                "agent": agent,
                "supervisor": getattr(supervisor, "__file__", None),
                "sys_path": sys.path,
            },
            f,
        )
