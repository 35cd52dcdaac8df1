"""``python -m supervisor`` is ``pyair``."""

from .cli import run

run()
