"""A watchdog that stops the processes of the Ray instance an evaluator started, if the evaluator dies first.

When ``python -m vpt_agent.evaluate --backend ray`` starts its own local Ray instance and is then killed with
SIGKILL, Ray's head processes (GCS, raylet, ...) die with it, but the raylet's agents (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``) try to report the raylet's death to the GCS that is already gone and stay alive
indefinitely (measured with Ray 2.60). No handler runs in a SIGKILLed process, so the cleanup must live in another
one: :func:`start` launches ``python -m vpt_agent.eval.reaper`` in its own session; the driver tells it the
pids of Ray's head processes (:meth:`Reaper.watch`; the driver's new children after ``ray.init``, see
:func:`children`), and it records those and all their descendants (pid and
start time, so a reused pid is never hit) every half second. When the driver's pipe closes (the driver exited
or died) or the driver sends ``stop``, it terminates every recorded process still alive (SIGTERM, then SIGKILL
after 2 s) and exits. It never touches processes outside that tree.

Linux only (it reads ``/proc``); elsewhere :func:`start` returns ``None`` and nothing is watched.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import time
from typing import Dict, Iterable, List, Optional, Set, Tuple

logger = logging.getLogger(__name__)

POLL_S = 0.5
GRACE_S = 2.0
ProcessKey = Tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> Optional[List[bytes]]:
    """The fields of /proc/PID/stat after the process name (field 3, the state, first), or ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()  # the name may contain spaces and parentheses


def _start_time(pid: int) -> Optional[int]:
    """Start time of ``pid`` (field 22 of /proc/PID/stat), or ``None`` if it is gone."""
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def _children_map() -> Dict[int, Set[int]]:
    children: Dict[int, Set[int]] = {}
    for name in os.listdir("/proc"):
        fields = _stat(int(name)) if name.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), set()).add(int(name))  # field 4: the parent's pid
    return children


def tree(roots: Iterable[int]) -> Set[ProcessKey]:
    """The live processes ``roots`` and all their descendants, as (pid, start time)."""
    children = _children_map()
    seen: Set[int] = set()
    todo = [pid for pid in roots]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
    keys = set()
    for pid in seen:
        started = _start_time(pid)
        if started is not None:
            keys.add((pid, started))
    return keys


def alive(key: ProcessKey) -> bool:
    """Whether that very process (same pid and start time) still exists (and is not a zombie)."""
    fields = _stat(key[0])
    return fields is not None and int(fields[19]) == key[1] and fields[0] != b"Z"


def terminate(keys: Iterable[ProcessKey], grace_s: float = GRACE_S) -> None:
    """SIGTERM every process of ``keys`` still alive, SIGKILL those left after ``grace_s``."""
    keys = [key for key in keys if key[0] != os.getpid()]
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        for key in keys:
            if alive(key):
                try:
                    os.kill(key[0], sig)
                except OSError:
                    pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(alive(key) for key in keys):
            time.sleep(0.05)


def _serve(stdin_fd: int) -> None:
    """The watchdog loop (in the reaper process): read roots and ``stop`` from the driver, track, terminate."""
    roots: Set[int] = set()
    recorded: Set[ProcessKey] = set()
    buffer = b""
    while True:
        ready, _, _ = select.select([stdin_fd], [], [], POLL_S)
        if ready:
            data = os.read(stdin_fd, 4096)
            if not data:
                break  # the driver is gone (exited or killed): its end of the pipe closed
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            if any(line.strip() == b"stop" for line in lines):
                recorded |= tree(roots)
                break
            roots.update(int(word) for line in lines for word in line.split() if word.isdigit())
        recorded |= tree(roots)
    terminate(recorded)


class Reaper:
    """The driver's handle on the reaper process."""

    def __init__(self, process: subprocess.Popen):
        self.process = process

    def watch(self, pids: Iterable[int]) -> None:
        """Add processes (and, from now on, their descendants) to the ones stopped when the driver dies."""
        self._send(" ".join(str(int(pid)) for pid in pids) + "\n")

    def stop(self, timeout: float = 10.0) -> None:
        """The driver is done: the reaper stops whatever is left of the watched processes and exits."""
        self._send("stop\n")
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def _send(self, text: str) -> None:
        try:
            self.process.stdin.write(text.encode())
            self.process.stdin.flush()
        except (OSError, ValueError):  # the reaper died: nothing to do about it here
            logger.debug("the reaper process is gone")


def start() -> Optional[Reaper]:
    """Start a reaper for this process (Linux); ``None`` elsewhere."""
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
        return None
    process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               start_new_session=True, close_fds=True)  # own session: Ctrl-C does not reach it
    return Reaper(process)


def children(pid: Optional[int] = None) -> Set[int]:
    """The direct children of ``pid`` (default: this process); compare before and after ``ray.init`` to find
    the processes Ray started (no private Ray API needed)."""
    if not os.path.isdir("/proc"):
        return set()
    return set(_children_map().get(os.getpid() if pid is None else pid, ()))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(sys.stdin.fileno())
