"""The app's own module: never preloaded, so every start imports it afresh."""

import os

LOADS = f"loaded-by-{os.getpid()}"
