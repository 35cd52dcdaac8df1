"""The app's own sitecustomize (on the app's PYTHONPATH): it must still run under pyair.

Leaves a mark in the environment that hotswap_jinja/app.py renders as ``site=<mark>``.
"""

import os
import sys

agent = "armed" if "supervisor.agent" in sys.modules else "absent"
os.environ["HOTSWAP_SITECUSTOMIZE"] = f"ran-{os.getpid()}-agent-{agent}"
