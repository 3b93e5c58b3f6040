"""The root of every error this package (and ``vpt_envs``) raises on purpose.

``except VPTError`` catches them all; each error also keeps the builtin base that describes it
(``ValueError`` for bad input, ``RuntimeError`` for a failure at run time, ...), so existing handlers still work.
"""


class VPTError(Exception):
    """Base class of vpt-agent's errors."""


def one_line(err: BaseException) -> str:
    """An error's message as one line (its lines joined, spaces folded), for a CLI's ``error: ...`` line; the type's
    name when the message is empty."""
    return " ".join(str(err).split()) or type(err).__name__
