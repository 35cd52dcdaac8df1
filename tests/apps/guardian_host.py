"""Test host: a stand-in for pyair that starts a Guardian and the spawner app with one token,
writes {"host", "guardian", "app"} pids to INFOFILE, then waits to be SIGKILLed.

    python guardian_host.py TOKEN PIDFILE INFOFILE
"""

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import anyio  # noqa: E402

from supervisor.config import AppCommand  # noqa: E402
from supervisor.process import AppProcess, Guardian  # noqa: E402


async def main() -> None:
    token, pidfile, infofile = sys.argv[1:4]
    guardian = Guardian.start(token)
    command = AppCommand(argv=(sys.executable, str(HERE / "spawner.py"), pidfile), shell=None)
    app = await AppProcess.start(command, cwd=HERE, env=os.environ, token=token)
    info = {"host": os.getpid(), "guardian": guardian.pid, "app": app.pid}
    with open(infofile + ".tmp", "w") as f:
        json.dump(info, f)
    os.replace(infofile + ".tmp", infofile)
    await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main)
