"""Fake ``minerl.env.malmo``: ``InstanceManager`` and ``MinecraftInstance`` as MineRL 1.0 has them.

What matches the real module: ``InstanceManager.get_instance`` puts a new instance in ``_instance_pool`` *before* it
is launched; ``MinecraftInstance.launch`` starts a process and blocks reading its output, with no timeout, until
``CLIENT enter state: DORMANT``; ``kill()`` does nothing while the instance is still launching (``running`` is
False), ``close()`` forces it; close/kill sleep, then reap the process and remove the instance from the pool;
reaping an instance whose process was not started yet raises ``AttributeError`` (the real one passes ``None`` to
``reap_process_and_children``). The process is a small Python script, not Minecraft: it prints the two lines MineRL
waits for (``launch_delay`` apart) and exits when killed or when its parent (the test run) is gone.
"""
import atexit
import os
import signal
import subprocess
import sys
import time

from minerl.env.fake_control import EVENTS, knob

_FAKE_MINECRAFT = r"""
import os, sys, time
port, delay = sys.argv[1], float(sys.argv[2])
parent = os.getppid()
print("[fake Minecraft] Starting", flush=True)
print("***** Start MalmoEnvServer on port " + port, flush=True)
end = time.monotonic() + delay
while time.monotonic() < end and os.getppid() == parent:
    time.sleep(0.01)
print("CLIENT enter state: DORMANT", flush=True)
while os.getppid() == parent:
    time.sleep(0.1)
"""


class InstanceManager:
    _instance_pool = []
    _malmo_base_port = 9000
    ninstances = 0
    MAXINSTANCES = None
    managed = True

    @classmethod
    def get_instance(cls, pid, instance_id=None):
        if not instance_id:
            for inst in cls._instance_pool:
                if not inst.locked:
                    inst._acquire_lock(pid)
                    return inst
        if not cls.managed:
            raise RuntimeError("No available instances and managed flag is off")
        if cls.MAXINSTANCES is not None and cls.ninstances >= cls.MAXINSTANCES:
            raise RuntimeError("No available instances and max instances reached! :O :O")
        instance_id = cls.ninstances if instance_id is None else instance_id
        cls.ninstances += 1
        inst = MinecraftInstance(cls._get_valid_port(), instance_id=instance_id)
        cls._instance_pool.append(inst)
        inst._acquire_lock(pid)
        return inst

    @classmethod
    def shutdown(cls):
        for inst in cls._instance_pool[:]:
            inst.release_lock()
            inst.kill()

    @classmethod
    def _get_valid_port(cls):
        return cls._malmo_base_port + cls.ninstances % 5000 + (17 * os.getpid()) % 3989


class MinecraftInstance:
    def __init__(self, port=None, existing=False, status_dir=None, seed=None, instance_id=None, max_mem=None):
        self.running = False
        self._starting = True
        self.minecraft_process = None
        self.client_socket = None
        self._port = port
        self._target_port = port
        self.host = "localhost"
        self.locked = False
        self.owner = None
        self.existing = existing
        self.instance_id = instance_id

    @property
    def port(self):
        return self._port

    def launch(self, daemonize=False, replaceable=True):
        self._starting = True
        time.sleep(knob("spawn_delay"))
        self.minecraft_process = subprocess.Popen(
            [sys.executable, "-S", "-u", "-c", _FAKE_MINECRAFT, str(self._target_port), str(knob("launch_delay"))],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        EVENTS["launches"] += 1
        EVENTS["processes"].append(self.minecraft_process)
        lines = []
        if knob("launch_error"):  # like _check_for_launch_errors on a log line: Java still runs, the instance pooled
            lines.append(self.minecraft_process.stdout.readline().decode())
            raise RuntimeError(knob("launch_error"))
        while True:  # like MineRL: no timeout on this read
            line = self.minecraft_process.stdout.readline().decode()
            if not line:
                raise EOFError("".join(lines) + "\n\nMinecraft process finished unexpectedly. There was an error "
                               "with Malmo.")
            lines.append(line)
            marker = "***** Start MalmoEnvServer on port "
            if marker in line:
                self._port = int(line.split(marker)[-1].strip())
            if "CLIENT enter state: DORMANT" in line:
                break
        self.running = True
        self._starting = False
        if not daemonize:
            atexit.register(self._destruct)

    def kill(self):
        self._destruct()

    def close(self):
        self._destruct(should_close=True)

    def alive(self):
        """Fake-only: whether the process still runs (what a live socket would tell)."""
        return self.minecraft_process is not None and self.minecraft_process.poll() is None

    def _destruct(self, should_close=False):
        if (self.running or should_close) and not self.existing:
            self.running = False
            self._starting = False
            delay = knob("close_delay")
            time.sleep(delay / 3)  # real: "wait for the process to start"
            if self.alive() and self._port:
                time.sleep(2 * delay / 3)  # real: <Exit> sent, "let the minecraft process term on its own terms"
            _reap(self.minecraft_process)
            if self in InstanceManager._instance_pool:
                InstanceManager._instance_pool.remove(self)
                self.release_lock()

    def _acquire_lock(self, owner=None):
        self.locked = True
        self.owner = owner

    def release_lock(self):
        self.locked = False
        self.owner = None

    def __repr__(self):  # as the real one: it fails (AttributeError) before the process exists
        return f"Malmo[proc={self.minecraft_process.pid}, addr={self.host}:{self.port}, locked={self.locked}]"


def _reap(process):
    """Terminate the process group, then kill it (as process_watcher.reap_process_and_children)."""
    pid = process.pid  # AttributeError for None, as in MineRL
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue
    if process.stdout is not None:  # the launch's pipe (real MineRL leaves it to the garbage collector)
        process.stdout.close()
