"""Run with ``python -S``: no site, so no sitecustomize and no agent, even though it imports
jinja2 (from AGENT_TEST_SITE_PACKAGES). Prints ``READY`` and waits for stdin to close.
"""

import os
import sys

sys.path.append(os.environ["AGENT_TEST_SITE_PACKAGES"])

import jinja2

env = jinja2.Environment(loader=jinja2.DictLoader({"page.html": "hi"}))
env.get_template("page.html")
print("READY", flush=True)
sys.stdin.read()
