"""An idle watcher, counting its process's wakeups: ``python idle_watcher.py ROOT``.

Starts a Watcher on ROOT, lets start-up settle, then counts every thread's context switches
(voluntary + involuntary, from /proc) over two seconds in which nothing changes, and prints
``{"wakeups": N}``.
"""

import json
import sys
from pathlib import Path

import anyio

from supervisor.config import Config
from supervisor.watcher import Watcher


def wakeups() -> int:
    total = 0
    for status in Path("/proc/self/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


async def main() -> None:
    send, receive = anyio.create_memory_object_stream[list[object]](10)
    watcher = Watcher(Config(root=Path(sys.argv[1])))
    async with receive, anyio.create_task_group() as tg:
        await tg.start(watcher.run, send)
        await anyio.sleep(0.5)  # start-up's worker threads go idle
        before = wakeups()
        await anyio.sleep(2.0)  # the window counted: nothing changes
        after = wakeups()
        tg.cancel_scope.cancel()
    print(json.dumps({"wakeups": after - before}))


anyio.run(main)
