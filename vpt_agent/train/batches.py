"""Batches of B lanes x T consecutive frames, streamed from episodes (truncated-BPTT windows).

Each lane plays episodes one after another, T kept steps per window, so the recurrent memory of a lane can
be carried from one window to the next. An episode's first window has ``first=True`` (memory reset); its
last window is zero-padded and masked, so a window never straddles two episodes. When a lane finishes an
episode it takes the next one from the data order (a seeded permutation per epoch).

Which episode and offset every lane reads at every step (the *plan*) depends only on the episodes' lengths,
B, T, the seed and the number of epochs: it is computed identically in the training process and in every
decoding worker, so the batches do not depend on the number of workers or their timing, and resuming at
step ``s`` only needs ``s`` (:meth:`WindowLoader.state_dict`).

With ``skip_null=True``, steps whose action is null in the agent's action space (see :mod:`.targets`) are
dropped before windows are cut (the VPT paper's rule). The default keeps them, which is what the official
``behavioural_cloning.py`` really does: its null check never fires. Recorder-level null actions (no key, no
mouse movement, no mouse button) are already dropped by :mod:`vpt_agent.data`, as by the official loader.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue as queue_mod
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import VPTError
from .targets import action_targets

logger = logging.getLogger(__name__)


class TrainDataError(VPTError, ValueError):
    """Training data that cannot be used; the message names the file."""


# ----------------------------------------------------------------------------- episode sources
class EpisodeSource(ABC):
    """A list of episodes: cheap access to their env actions, streamed access to their frames.

    Must be picklable (decoding workers receive a copy).
    """

    frame_shape: Tuple[int, int, int]

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def name(self, i: int) -> str:
        """How errors refer to episode ``i`` (its file)."""

    @abstractmethod
    def actions(self, i: int) -> Sequence[Mapping[str, Any]]:
        """Env actions of episode ``i``, one per step."""

    @abstractmethod
    def frames(self, i: int) -> Iterator[np.ndarray]:
        """Frames (H, W, 3) uint8 RGB of episode ``i``, one per step, aligned with :meth:`actions`."""


class MemorySource(EpisodeSource):
    """Episodes held in memory: ``[(frames (N, H, W, 3) uint8, [N env actions]), ...]`` (tests, small data)."""

    def __init__(self, episodes: Sequence[Tuple[np.ndarray, Sequence[Mapping[str, Any]]]],
                 names: Optional[Sequence[str]] = None):
        if not episodes:
            raise TrainDataError("no episodes given")
        self.episodes = [(np.asarray(f), list(a)) for f, a in episodes]
        self.names = list(names) if names is not None else [f"episode {i}" for i in range(len(episodes))]
        self.frame_shape = tuple(self.episodes[0][0].shape[1:])  # type: ignore[assignment]
        for i, (f, a) in enumerate(self.episodes):
            if len(f) != len(a):
                raise TrainDataError(f"{self.names[i]}: {len(f)} frames but {len(a)} actions")

    def __len__(self) -> int:
        return len(self.episodes)

    def name(self, i: int) -> str:
        return self.names[i]

    def actions(self, i: int) -> Sequence[Mapping[str, Any]]:
        return self.episodes[i][1]

    def frames(self, i: int) -> Iterator[np.ndarray]:
        return iter(self.episodes[i][0])


class RecordingSource(EpisodeSource):
    """VPT recordings (``NAME.mp4`` + ``NAME.jsonl``) read with :mod:`vpt_agent.data` at the agent's resolution.

    Actions (the jsonl, parsed with the official loader's semantics) are read up front, so a bad line or a
    frame/line count mismatch fails before training starts; frames are decoded lazily, one at a time.
    ``options`` (:class:`vpt_agent.data.ReadOptions`) picks where the official loader's accidents are
    reproduced; ``ReadOptions.official()`` is that loader bit for bit
    (its camera degrees truncated toward zero: every move under 1 degree becomes the null camera).
    """

    def __init__(self, paths: Any, frame_shape: Sequence[int] = (128, 128, 3), options: Any = None):
        from .. import data

        self.files = list(data.find_recordings(paths))
        self.frame_shape = tuple(int(s) for s in frame_shape)  # type: ignore[assignment]
        self.options = options if options is not None else data.ReadOptions()
        self._actions: Dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.files)

    def name(self, i: int) -> str:
        return str(self.files[i].video.with_suffix(""))

    def _recording_actions(self, i: int) -> Any:
        from .. import data

        if i not in self._actions:
            self._actions[i] = data.load_actions(self.files[i], self.options)
        return self._actions[i]

    def actions(self, i: int) -> Sequence[Mapping[str, Any]]:
        return self._recording_actions(i).actions

    def frames(self, i: int) -> Iterator[np.ndarray]:
        from .. import data

        h, w = self.frame_shape[:2]
        acts = self._recording_actions(i)
        return (frame for frame, _ in data.iter_recording(self.files[i], size=(h, w), options=self.options,
                                                          actions=acts))

    def __getstate__(self) -> Dict[str, Any]:
        return {**self.__dict__, "_actions": {}}  # workers re-parse only the episodes they read


# ----------------------------------------------------------------------------- the plan
class EpisodeTargets(NamedTuple):
    """Training targets of one episode: which source steps are kept, and their joint action indices."""

    keep: np.ndarray  # (n_kept,) source step indices
    buttons: np.ndarray  # (n_kept,)
    camera: np.ndarray  # (n_kept,)


def episode_targets(source: EpisodeSource, i: int, skip_null: bool = False) -> EpisodeTargets:
    """Parse episode ``i``'s actions into targets (null actions dropped if ``skip_null``). Errors name the file."""
    try:
        t = action_targets(source.actions(i))
    except VPTError:
        raise
    except (ValueError, TypeError, KeyError) as e:
        raise TrainDataError(f"{source.name(i)}: unusable actions ({e})") from e
    keep = np.flatnonzero(~t.null) if skip_null else np.arange(len(t.null))
    return EpisodeTargets(keep, t.buttons[keep], t.camera[keep])


class Slot(NamedTuple):
    """What one lane reads at one step: ``window`` number ``w`` (frames ``w*T .. w*T+T-1``) of ``episode``."""

    episode: int
    epoch: int
    window: int


def plan(lengths: Sequence[int], batch: int, seq_len: int, seed: int, epochs: Optional[int],
         start: int = 0) -> Iterator[List[Optional[Slot]]]:
    """Per step, the :class:`Slot` of each lane (``None``: idle, the data is used up). Ends when all lanes idle.

    Episodes of zero length are skipped. ``epochs=None`` cycles forever.
    """
    usable = [i for i, n in enumerate(lengths) if n > 0]
    if not usable:
        return
    n_windows = {i: -(-lengths[i] // seq_len) for i in usable}

    def stream() -> Iterator[Tuple[int, int]]:
        epoch = 0
        while epochs is None or epoch < epochs:
            order = np.random.default_rng([seed, epoch]).permutation(len(usable))
            for k in order:
                yield usable[int(k)], epoch
            epoch += 1

    episodes = stream()
    current: List[Optional[Slot]] = [None] * batch
    step = 0
    while True:
        for lane in range(batch):
            slot = current[lane]
            if slot is not None and slot.window + 1 < n_windows[slot.episode]:
                current[lane] = slot._replace(window=slot.window + 1)
            else:
                nxt = next(episodes, None)
                current[lane] = None if nxt is None else Slot(nxt[0], nxt[1], 0)
        if all(s is None for s in current):
            return
        if step >= start:
            yield list(current)
        step += 1


# ----------------------------------------------------------------------------- windows
class Batch(NamedTuple):
    """One training step's data. ``first[b]``: lane b starts an episode at t=0 (reset its memory)."""

    step: int
    frames: np.ndarray  # (B, T, H, W, 3) uint8
    buttons: np.ndarray  # (B, T) int64
    camera: np.ndarray  # (B, T) int64
    mask: np.ndarray  # (B, T) bool: a real (not padded) step
    first: np.ndarray  # (B,) bool
    episode: np.ndarray  # (B,) int64: the episode each lane reads (-1: idle lane)
    epoch: int  # the lowest epoch among the lanes


@dataclass
class _LaneReader:
    """A lane's open episode: its kept frames are read in order."""

    episode: int
    frames: Iterator[np.ndarray]
    position: int  # source step index of the next frame of ``frames``
    read: int  # kept steps already consumed


def _window_rows(source: EpisodeSource, targets: Sequence[EpisodeTargets], readers: Dict[int, _LaneReader],
                 lane: int, slot: Optional[Slot], seq_len: int) -> Tuple[np.ndarray, ...]:
    """(frames (T,H,W,3), buttons (T,), camera (T,), mask (T,), first, episode) of one lane at one step."""
    T = seq_len
    frames = np.zeros((T, *source.frame_shape), dtype=np.uint8)
    buttons = np.zeros(T, dtype=np.int64)
    camera = np.zeros(T, dtype=np.int64)
    mask = np.zeros(T, dtype=bool)
    if slot is None:
        return frames, buttons, camera, mask, np.bool_(True), np.int64(-1)
    tg = targets[slot.episode]
    reader = readers.get(lane)
    start = slot.window * T
    if reader is None or reader.episode != slot.episode or reader.read != start:
        reader = _LaneReader(slot.episode, source.frames(slot.episode), 0, 0)
        readers[lane] = reader
        reader.read = 0
        _skip_to(source, reader, tg, start)
    n = min(T, len(tg.keep) - start)
    for t in range(n):
        frames[t] = _next_kept_frame(source, reader, tg)
    buttons[:n] = tg.buttons[start:start + n]
    camera[:n] = tg.camera[start:start + n]
    mask[:n] = True
    return frames, buttons, camera, mask, np.bool_(slot.window == 0), np.int64(slot.episode)


def _skip_to(source: EpisodeSource, reader: _LaneReader, tg: EpisodeTargets, kept: int) -> None:
    while reader.read < kept:
        _next_kept_frame(source, reader, tg)


def _next_kept_frame(source: EpisodeSource, reader: _LaneReader, tg: EpisodeTargets) -> np.ndarray:
    want = int(tg.keep[reader.read])
    while True:
        try:
            frame = next(reader.frames)
        except StopIteration:
            raise TrainDataError(f"{source.name(reader.episode)}: the video ends after {reader.position} frames, "
                                 f"but the actions have more steps (mismatched lengths)") from None
        pos = reader.position
        reader.position += 1
        if pos == want:
            break
    if frame.shape != source.frame_shape or frame.dtype != np.uint8:
        raise TrainDataError(f"{source.name(reader.episode)}: frame {pos} is {frame.dtype} {frame.shape}, "
                             f"expected uint8 {source.frame_shape}")
    reader.read += 1
    return frame


def _lane_bundles(source: EpisodeSource, targets: Sequence[EpisodeTargets], lanes: Sequence[int],
                  batch: int, seq_len: int, seed: int, epochs: Optional[int], start: int
                  ) -> Iterator[Tuple[int, Dict[int, Tuple[np.ndarray, ...]], int]]:
    """(step, {lane: window rows}, lowest epoch) for the given lanes, from step ``start`` on."""
    lengths = [len(t.keep) for t in targets]
    readers: Dict[int, _LaneReader] = {}
    for step, slots in enumerate(plan(lengths, batch, seq_len, seed, epochs, start), start):
        rows = {lane: _window_rows(source, targets, readers, lane, slots[lane], seq_len) for lane in lanes}
        epoch = min(s.epoch for s in slots if s is not None)
        yield step, rows, epoch


def _worker_main(source: EpisodeSource, targets: Sequence[EpisodeTargets], lanes: Sequence[int], batch: int,
                 seq_len: int, seed: int, epochs: Optional[int], start: int, out: Any, stop: Any,
                 parent: int) -> None:
    """Decoding process: puts ("ok", bundle) per step, then ("end",), or ("error", message) and exits.

    It also exits when the training process is gone (killed with -9, the daemon flag does not help then).
    """
    def wanted() -> bool:
        return not stop.is_set() and os.getppid() == parent

    try:
        for bundle in _lane_bundles(source, targets, lanes, batch, seq_len, seed, epochs, start):
            while wanted():
                try:
                    out.put(("ok", bundle), timeout=0.5)
                    break
                except queue_mod.Full:
                    continue
            if not wanted():
                return
        out.put(("end",))
    except Exception as e:  # forwarded to the training process, which raises it
        out.put(("error", type(e).__name__, str(e), isinstance(e, VPTError)))
    finally:
        if not wanted():
            # Nobody reads the queue any more: exit without waiting for its feeder thread to flush into a pipe
            # that may be full (it would block forever, and the process with it).
            out.cancel_join_thread()


class WindowLoader:
    """Iterates :class:`Batch` es of ``batch`` lanes x ``seq_len`` steps over ``source``.

    ``lanes`` (default: all) picks the lanes this loader reads, in order, out of the ``batch`` lanes of the one
    plan (data-parallel training: each process reads its share of the same plan). ``workers`` > 0 decodes in
    that many processes (the i-th lane read by worker ``i % workers``), each with a bounded queue of
    ``prefetch`` steps. ``state_dict()`` / ``load_state_dict()`` hold the next step; iteration continues
    exactly there.
    """

    def __init__(self, source: EpisodeSource, batch: int, seq_len: int, seed: int = 0,
                 epochs: Optional[int] = None, workers: int = 0, prefetch: int = 2, skip_null: bool = False,
                 lanes: Optional[Sequence[int]] = None):
        if batch < 1 or seq_len < 1:
            raise ValueError("batch and seq_len must be >= 1")
        self.source, self.batch, self.seq_len = source, batch, seq_len
        self.lanes = list(range(batch)) if lanes is None else [int(b) for b in lanes]
        if not self.lanes or any(not 0 <= b < batch for b in self.lanes) or len(set(self.lanes)) < len(self.lanes):
            raise ValueError(f"lanes must be distinct lanes of 0..{batch - 1}, got {lanes}")
        self.seed, self.epochs = seed, epochs
        self.workers, self.prefetch = min(workers, len(self.lanes)), prefetch
        self.targets = [episode_targets(source, i, skip_null) for i in range(len(source))]
        self.lengths = [len(t.keep) for t in self.targets]
        if sum(self.lengths) == 0:
            raise TrainDataError(f"no training steps in the {len(source)} episode(s) (first: {source.name(0)})"
                                 + (": every action is a null action" if skip_null else ""))
        self.next_step = 0
        self._procs: List[Any] = []

    def steps_per_epoch_estimate(self) -> int:
        """Optimizer steps one pass over the data takes (windows of T frames over B lanes), for progress bars."""
        windows = sum(-(-n // self.seq_len) for n in self.lengths)
        return max(1, -(-windows // self.batch))

    def state_dict(self) -> Dict[str, Any]:
        """The loader's position (the next step of its fixed plan) and what the plan depends on, for checkpoints."""
        return {"next_step": self.next_step, "seed": self.seed, "batch": self.batch, "seq_len": self.seq_len}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue at a saved position; ``ValueError`` if the saved plan had another seed, B or T."""
        for k in ("seed", "batch", "seq_len"):
            if state[k] != getattr(self, k):
                raise ValueError(f"loader state has {k}={state[k]}, this loader {getattr(self, k)}")
        self.next_step = int(state["next_step"])

    def __iter__(self) -> Iterator[Batch]:
        if self.workers <= 0:
            bundles = _lane_bundles(self.source, self.targets, self.lanes, self.batch, self.seq_len,
                                    self.seed, self.epochs, self.next_step)
            for step, rows, epoch in bundles:
                yield self._assemble(step, rows, epoch)
            return
        yield from self._iter_workers()

    def _assemble(self, step: int, rows: Mapping[int, Tuple[np.ndarray, ...]], epoch: int) -> Batch:
        parts = [rows[b] for b in self.lanes]
        self.next_step = step + 1
        return Batch(step, *(np.stack([p[k] for p in parts]) for k in range(6)), epoch=epoch)

    def _iter_workers(self) -> Iterator[Batch]:
        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        queues = [ctx.Queue(maxsize=self.prefetch) for _ in range(self.workers)]
        self._procs = []
        for w, q in enumerate(queues):
            lanes = self.lanes[w::self.workers]
            p = ctx.Process(target=_worker_main, daemon=True, name=f"vpt-train-decode-{w}",
                            args=(self.source, self.targets, lanes, self.batch, self.seq_len, self.seed,
                                  self.epochs, self.next_step, q, stop, os.getpid()))
            p.start()
            self._procs.append(p)
        try:
            while True:
                rows: Dict[int, Tuple[np.ndarray, ...]] = {}
                step = epoch = None
                for w, q in enumerate(queues):
                    msg = self._get(q, self._procs[w])
                    if msg[0] == "end":
                        return
                    if msg[0] == "error":
                        _, kind, text, is_data = msg
                        raise (TrainDataError(text) if is_data else RuntimeError(f"decoding worker: {kind}: {text}"))
                    step, part, epoch = msg[1]
                    rows.update(part)
                yield self._assemble(step, rows, epoch)
        finally:
            stop.set()
            for p in self._procs:
                p.join(timeout=2)
                if p.is_alive():
                    p.terminate()
            self._procs = []

    @staticmethod
    def _get(q: Any, proc: Any) -> Tuple[Any, ...]:
        while True:
            try:
                return q.get(timeout=1.0)
            except queue_mod.Empty:
                if not proc.is_alive():
                    try:
                        return q.get(timeout=1.0)
                    except queue_mod.Empty:
                        raise RuntimeError(f"decoding worker {proc.name} died (exit code {proc.exitcode})") from None
