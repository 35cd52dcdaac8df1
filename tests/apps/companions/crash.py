"""A process that crashes at once: each start appends a line to crashes.log."""

import sys
import time

with open("crashes.log", "a") as log:
    log.write(f"{time.monotonic()}\n")
print("crashing", file=sys.stderr)
sys.exit(3)
