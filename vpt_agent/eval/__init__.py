"""The evaluation runner behind ``python -m vpt_agent.evaluate`` (see that module for the command line).

Modules, by concern: :mod:`.config` (``EvalConfig`` and its validation), :mod:`.cli` (the parser generated from
it), :mod:`.rundir` (run identity and resume), :mod:`.runner` (``evaluate``), :mod:`.rollout` (the loop),
:mod:`.workers` (env processes / Ray actors), :mod:`.records` (the episode record), :mod:`.report` (log,
statistics, plot, table) and :mod:`.video`. Importing this package imports neither torch nor cv2.
"""
