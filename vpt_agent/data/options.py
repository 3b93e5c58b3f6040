"""How recordings are read: the choices where the official loader's behaviour is a bug or is left undefined."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .errors import DataError

LENGTH_MISMATCH_CHOICES = ("error", "truncate")


@dataclass(frozen=True)
class ReadOptions:
    """Options of :func:`~vpt_agent.data.load_actions` / :func:`~vpt_agent.data.iter_recording`.

    Attributes:
        integer_camera: truncate camera degrees toward zero, as the official ``json_action_to_env_action``
            does by accident (it fills an integer array; openai/Video-Pre-Training issue #54). ``False``
            (default) keeps the intended 360/2400 degrees per pixel. Turn it on only to reproduce the official
            loader bit for bit (e.g. golden comparisons with the official ``behavioural_cloning.py``).
        recorder_version: the recorder version of the data (the ``6.9`` in the index's ``6.9/NAME`` paths).
            When given, mouse dx/dy of steps with the GUI open are multiplied by that version's GUI scale
            (:data:`~vpt_agent.data.actions.GUI_CAMERA_SCALE`; 1 for versions not listed). The official
            loader defines that table but never applies it, so ``None`` (default) applies no scale either.
        length_mismatch: what to do when the mp4 has a different number of frames than the jsonl has lines.
            ``"error"`` (default): :class:`~vpt_agent.data.DataError`. ``"truncate"``: the official loader's
            behaviour - line i pairs with frame i, lines past the last frame are dropped, frames past the
            last line are ignored.
    """

    integer_camera: bool = False
    recorder_version: Optional[str] = None
    length_mismatch: str = "error"

    @classmethod
    def official(cls) -> "ReadOptions":
        """The official ``data_loader.py`` bit for bit, accidents included: camera degrees truncated toward zero
        (every move under 1 degree becomes the null camera), a frame/line count mismatch truncated."""
        return cls(integer_camera=True, length_mismatch="truncate")

    def __post_init__(self) -> None:
        if self.length_mismatch not in LENGTH_MISMATCH_CHOICES:
            raise DataError(f"length_mismatch must be one of {LENGTH_MISMATCH_CHOICES}, "
                            f"got {self.length_mismatch!r}")
