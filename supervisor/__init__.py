"""pyair: a live-reload supervisor for Python web apps.

    $ pyair -c .air.toml

See the README for the config reference.
"""

__version__ = "0.1.0"
