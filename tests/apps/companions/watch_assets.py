"""A stand-in for `tailwindcss --watch`: watches by itself, so pyair only keeps it alive.

Writes its pid to assets.pid, reports on stderr, then runs until stopped.
"""

import os
import sys
import time

with open("assets.pid", "w") as out:
    out.write(f"{os.getpid()}\n")
print(
    f"assets: watching (pid {os.getpid()}, colour={os.environ.get('FORCE_COLOR', '-')})",
    file=sys.stderr,
    flush=True,
)
while True:
    time.sleep(3600)  # poll
