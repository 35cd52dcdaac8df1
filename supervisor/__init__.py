"""pyair: a live-reload supervisor for Python web apps.

    $ pyair -c .air.toml

Units, each with one job (a module or a package); imports point down this list only, units
on one line never import each other (``tests/test_layers.py`` holds it):

- ``cli``: the command line, the only place that exits; ``smoke`` and ``init`` subcommands.
- ``engine``: one task group for pyair's lifetime; routes each change to a restart, a template
  swap or an asset refresh, keeps the state machine, and tells observers (``events``) what
  happened. It takes its change source and its ``runtime``, so tests script both.
- ``runtime``: what the engine's decisions do on this machine; wires the services below.
  ``companions``: what runs beside the app, each with its own state: air's build rules (a
  quiet window, one run at a time) and the extra processes (restarts, reruns with back-off).
- The services: ``zygote`` (warm restarts forked from a preloaded interpreter), ``watcher``
  (the file watch with air's filters and pyair's debounce), ``process`` (build steps, the app's
  process tree, stopping it whole, the orphan guardian), ``control`` (the private control
  socket to the agent), ``proxy/`` (+ ``static/``: the live-reload reverse proxy and its
  browser client), ``readiness`` (when a started app is up, and where its port is),
  ``sources`` (the project's files; the last good text of its templates), ``listeners``
  (the app's listening socket, held across restarts, and who still holds it).
- ``classify`` (batch → plan) and ``events``; ``console``: all output (the only rich user);
  ``config/``: ``.air.toml`` and flags (a package: its docstring maps it); ``errors``: one-line
  errors.
- The child side, run in other interpreters and importing only the standard library:
  ``agent/`` inside the app (and ``protocol``, ``childside``), ``zygote_main`` in the zygote,
  ``guardian_main`` in the guardian; ``protocol``: the control socket's messages;
  ``childside``: what they share (environment names, ``/proc``, one framing).
"""

__version__ = "0.1.0"
