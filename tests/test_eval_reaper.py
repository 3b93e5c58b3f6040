"""The reaper stops the watched process trees (Ray's, in the evaluator) when their driver dies, even by SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vpt_agent.eval import reaper

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper reads /proc (Linux only)")

# A driver: starts the reaper, a watched child that starts a grandchild in its own session which ignores SIGTERM
# (like Ray's agents, re-parented to init when the child dies), and an unrelated child it does not watch.
DRIVER = textwrap.dedent("""
    import subprocess, sys, time
    from vpt_agent.eval import reaper
    before = reaper.children()
    r = reaper.start()
    grandchild = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                  "time.sleep(120)")
    child = subprocess.Popen([sys.executable, "-c",
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', %r], start_new_session=True); "
        "time.sleep(120)" % grandchild])
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    deadline = time.monotonic() + 60  # a loaded machine can take seconds to start the grandchild's Python
    while len(reaper.tree([child.pid])) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    new = reaper.children() - before - {r.process.pid, unrelated.pid}
    r.watch(new)
    time.sleep(1.5)  # let the reaper record the tree
    print(child.pid, unrelated.pid, r.process.pid, flush=True)
    sys.stdin.readline()  # the test has read the tree it will check
    if sys.argv[1] == "stop":
        r.stop()
        print("stopped", flush=True)
    time.sleep(120)
""")


def _start_driver(mode):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    child, unrelated, reaper_pid = map(int, driver.stdout.readline().split())
    watched = reaper.tree([child])
    driver.stdin.write("go\n")
    driver.stdin.flush()
    assert len(watched) == 2  # the child and its grandchild
    return driver, watched, unrelated, reaper_pid


def _wait_gone(keys, timeout=10.0):
    deadline = time.monotonic() + timeout
    while any(reaper.alive(key) for key in keys):
        assert time.monotonic() < deadline, [key for key in keys if reaper.alive(key)]
        time.sleep(0.1)


def _cleanup(*pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_sigkill_of_the_driver_stops_the_watched_tree_only():
    driver, watched, unrelated, reaper_pid = _start_driver("kill")
    unrelated_key = next(iter(reaper.tree([unrelated])))
    try:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        _wait_gone(watched)  # the grandchild ignored SIGTERM: it got SIGKILL
        assert reaper.alive(unrelated_key)  # not watched: left alone
        _wait_gone(reaper.tree([reaper_pid]))  # and the reaper exits
    finally:
        _cleanup(unrelated, *(pid for pid, _ in watched), driver.pid)


def test_stop_cleans_up_leftovers_and_exits():
    driver, watched, unrelated, reaper_pid = _start_driver("stop")
    try:
        assert driver.stdout.readline().strip() == "stopped"
        _wait_gone(watched, timeout=1.0)
        assert driver.poll() is None  # the driver goes on
    finally:
        driver.kill()
        driver.wait(timeout=10)
        _cleanup(unrelated, *(pid for pid, _ in watched))


def test_tree_and_alive_track_pid_and_start_time():
    me = reaper.tree([os.getpid()])
    assert any(pid == os.getpid() for pid, _ in me)
    key = next(k for k in me if k[0] == os.getpid())
    assert reaper.alive(key)
    assert not reaper.alive((key[0], key[1] + 1))  # same pid, another start time: a reused pid is not ours
