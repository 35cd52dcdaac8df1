"""Test app: starts a small process tree, writes its pids to a JSON file, then waits.

    python spawner.py PIDFILE [--stubborn] [--stubborn-child] [--exit]

Its processes: ``app`` (itself), ``group`` (a sleep in its process group), ``setsid`` (a sleep in
its own session, child of the app) and ``orphan`` (a sleep in its own session whose parent has
exited: only the PYAIR_TREE marker still finds it). The app exits 0 on SIGINT/SIGTERM;
``--stubborn`` ignores both; ``--stubborn-child`` makes ``setsid`` a Python child that ignores
both; ``--exit`` exits as soon as the file is written.
"""

import json
import os
import signal
import subprocess
import sys
import time

ORPHAN = (  # its own stdio must not hold the pipes subprocess.run reads until EOF
    "import subprocess as s\n"
    "p = s.Popen(['sleep', '1000'], start_new_session=True, stdout=s.DEVNULL, stderr=s.DEVNULL)\n"
    "print(p.pid)\n"
)
STUBBORN = (
    "import signal, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(1000)\n"
)


def main() -> None:
    pidfile, flags = sys.argv[1], set(sys.argv[2:])
    handler = signal.SIG_IGN if "--stubborn" in flags else (lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    group = subprocess.Popen(["sleep", "1000"])
    if "--stubborn-child" in flags:
        argv = [sys.executable, "-I", "-S", "-c", STUBBORN]
        setsid = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.PIPE)
        assert setsid.stdout is not None and setsid.stdout.readline() == b"ready\n"
    else:
        setsid = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    orphan = subprocess.run(
        [sys.executable, "-I", "-S", "-c", ORPHAN], capture_output=True, text=True, check=True
    )
    pids = {
        "app": os.getpid(),
        "group": group.pid,
        "setsid": setsid.pid,
        "orphan": int(orphan.stdout),
    }
    with open(pidfile + ".tmp", "w") as f:
        json.dump(pids, f)
    os.replace(pidfile + ".tmp", pidfile)
    if "--exit" in flags:
        return
    while True:
        time.sleep(1000)


if __name__ == "__main__":
    main()
