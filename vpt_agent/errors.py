"""The root of every error this package (and ``vpt_envs``) raises on purpose.

``except VPTError`` catches them all; each error also keeps the builtin base that describes it
(``ValueError`` for bad input, ``RuntimeError`` for a failure at run time, ...), so existing handlers still work.
"""


class VPTError(Exception):
    """Base class of vpt-agent's errors."""
