"""A stand-in for a Celery/RQ worker: loads its task code, says so, then waits for work.

Each start writes "<pid> <VERSION>" to worker.state; with SPAWN_CHILD set it also starts a
child of its own (a pool process), whose pid goes to worker.child.
"""

import os
import subprocess
import sys
import time

import tasks

if os.environ.get("SPAWN_CHILD"):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open("worker.child", "w") as out:
        out.write(f"{child.pid}\n")
with open("worker.state.tmp", "w") as out:
    out.write(f"{os.getpid()} {tasks.VERSION}\n")
os.replace("worker.state.tmp", "worker.state")
print(f"worker ready pid={os.getpid()} tasks={tasks.VERSION}")
sys.stdout.write("waiting for tasks...")  # no newline: shown once nothing more comes
sys.stdout.flush()
while True:
    time.sleep(3600)  # poll
