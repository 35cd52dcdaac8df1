"""pyair: a live-reload supervisor for Python web apps.

    $ pyair -c .air.toml

Modules, each with one job; imports point down this list only (``tests/test_cli.py`` holds it):

- ``cli``: the command line, the only place that exits; ``smoke`` and ``init`` subcommands.
- ``engine``: one task group for pyair's lifetime; routes each change to a restart, a template
  swap or an asset refresh, and tells observers (``events``) what happened.
- ``zygote`` (+ ``zygote_main``, run in the app's interpreter): warm restarts by forking a
  preloaded interpreter.
- ``watcher``: watchfiles with air's filters and pyair's debounce; ``classify``: batch → plan.
- ``process``: build steps, the app's process tree, stopping it whole, the orphan guardian.
- ``control`` / ``protocol``: the private control socket to the agent.
- ``proxy`` (+ ``static/``): the live-reload reverse proxy and its browser client.
- ``console``: all output; ``config/``: ``.air.toml`` and flags (a package: its docstring maps
  it); ``errors``: one-line errors.
- ``agent/``: runs inside the user's app (stdlib + ``protocol`` only).
"""

__version__ = "0.1.0"
