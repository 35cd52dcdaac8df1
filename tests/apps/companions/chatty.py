"""A process that prints as fast as it can (a flood of output) until it is stopped."""

import sys

line = "x" * 60 + "\n"
n = 0
while True:
    n += 1
    sys.stdout.write(f"{n} {line}")
