"""Test knobs and records of the fake ``minerl`` (not part of the real package).

``FAKE`` holds knobs a test may set (the fixture clears it); ``EVENTS`` records what happened.
Knobs (``DEFAULTS`` are the real package's orders of magnitude; tests set small values):
- ``launch_delay``: seconds the fake Minecraft process takes between announcing its port and
  ``CLIENT enter state: DORMANT`` (the line MineRL's launch waits for, with no timeout).
- ``spawn_delay``: seconds between an instance joining the pool and its process starting (real: short).
- ``close_delay``: seconds ``MinecraftInstance`` close/kill take (real: sleep 1 s, send ``<Exit>``, sleep 2 s).
- ``fail_at_step``: step index (1-based, per episode) at which the socket "times out".
- ``server_fail_at_step``: step index at which sending ``<StepServer>`` fails (that step answers normally, the
  env marks itself done, the next step raises ``RuntimeError``).
- ``inventory_fn(step, pressed, inventory)``: mutates the inventory dict each step; ``pressed`` holds the
  buttons the Java side pressed (value 1) and ``camera`` (default: +1 oak_log while attack is pressed).
- ``close_raises``: the env's ``close()`` raises after cleaning up (like psutil.NoSuchProcess on Windows).
- ``launch_error``: text of a ``RuntimeError`` that launch raises after the first log line (as the real
  ``_check_for_launch_errors`` does on a missing X server): the process keeps running, the instance stays pooled.
- ``extreme_stats``: Java sends what real worlds do beyond MineRL's declared bounds: a desert (biome temperature
  2.0), 5,000 xp, a netherite pickaxe in the main hand (damage/maxDamage 2031).
EVENTS: ``launches`` (processes started), ``missions`` (worlds created), ``closes`` (env.close calls),
``actions`` (dicts given to step), ``commands`` (the text sent to Java), ``seeds`` (env.seed calls),
``processes`` (the Popen objects of every fake Minecraft process).
"""

DEFAULTS = {"launch_delay": 5.0, "spawn_delay": 0.0, "close_delay": 3.0, "fail_at_step": None,
            "server_fail_at_step": None, "inventory_fn": None, "close_raises": False, "launch_error": None,
            "extreme_stats": False}
FAKE = {}
EVENTS = {}


def knob(name):
    return FAKE.get(name, DEFAULTS[name])


def clear():
    """Forget knobs and records (the test fixture calls this)."""
    FAKE.clear()
    EVENTS.clear()
    EVENTS.update(launches=0, missions=0, closes=0, actions=[], commands=[], seeds=[], processes=[])


clear()
