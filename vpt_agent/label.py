"""``python -m vpt_agent.label`` (``vpt-label``): label videos with an inverse dynamics model, in VPT's format.

For every video ``NAME.*`` it writes ``OUT/NAME.jsonl`` (one action record per frame, VPT's recorder format via
:func:`vpt_agent.data.env_action_to_json`) next to ``OUT/NAME.mp4`` (the video itself, hard-linked or copied, or
re-encoded when it had to be resampled), so ``vpt_agent.data`` / ``python -m vpt_agent.train`` read it like
contractor data.

* **Frame rate.** VPT data is 20 Hz. Output frame k shows the source frame on screen at time k/20 s
  (sample and hold: source index ``floor(k * fps / 20)``); a source within 0.05 Hz of 20 is used as is.
* **Windows.** The IDM was trained on chunks of ``timesteps`` (128) frames with attention over the whole
  chunk, and its 3D conv zero-pads at chunk ends, so predictions near a chunk edge lack context. Windows of
  ``timesteps`` frames start every ``--stride`` frames (default half a window), each from a fresh memory; every
  frame takes its label from the window where it has the most context on its poorer side. With the default
  stride each frame (except the first/last quarter window of a video) sees >= 32 frames (1.6 s) on both
  sides, at twice the compute of back-to-back chunks (which is what the official demo does). An LSTM IDM
  without ``timesteps`` gets windows of 128 frames.
* **Official procedure** (``--official``): as the official ``run_inverse_dynamics_model.py``, back-to-back calls
  of ``--n-frames`` (128) frames to one IDM whose memory carries from call to call, the last call on the frames
  left: every frame's label equals the official script's (tested against its outputs).
* **Batched**: windows of several videos go through the network together (GPU when present).
* **Resumable**: a video whose ``NAME.mp4`` and ``NAME.jsonl`` are both in OUT is skipped. Outputs are written
  under temporary names and renamed (video first, jsonl last), so a killed run leaves no complete-looking pair.

Example::

    python -m vpt_agent.label --idm 4x-idm --videos videos/ --out labelled/
"""
from __future__ import annotations

import argparse
import logging
import os
import queue
import shutil
import sys
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .action_mapping import BUTTONS
from . import cli
from .data import DataError, RecordingFiles, recording_files
from .data.writer import partial_path, write_actions
from .data.video import FPS, VideoEncoder, check_file_name, quiet_ffmpeg
from .atomic import out_dir_problem
from .errors import VPTError, one_line
from .frames import preprocess_pov

logger = logging.getLogger(__name__)

PROG = "python -m vpt_agent.label"
FPS_TOLERANCE = 0.05
OFFICIAL_N_FRAMES = 128  # frames per predict_actions call in the official run_inverse_dynamics_model.py
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


class LabelError(VPTError, ValueError):
    """Bad input to the labeller (no videos, unreadable video, output path that is a file, ...)."""


@dataclass
class LabelConfig:
    """Options of a labelling run (one field per command-line flag)."""

    videos: List[str] = field(default_factory=list, metadata={
        "help": "video files and/or directories of videos (" + ", ".join(VIDEO_SUFFIXES) + ")", "nargs": "+"})
    out: str = field(default="", metadata={"help": "output directory (NAME.mp4 + NAME.jsonl per video)"})
    idm: Optional[str] = field(default=None, metadata={"help": "model zoo name of the IDM, e.g. 4x-idm"})
    model: Optional[str] = field(default=None, metadata={"help": "IDM .model file (with --weights)"})
    weights: Optional[str] = field(default=None, metadata={"help": "IDM .weights/.safetensors file (with --model)"})
    stride: Optional[int] = field(default=None, metadata={
        "help": "frames between window starts (default: half the model's window, 64 for 4x)"})
    official: bool = field(default=False, metadata={
        "help": "label as the official run_inverse_dynamics_model.py: back-to-back calls of --n-frames frames, "
                "memory carried from call to call, the last call on the frames left (no overlapping windows)"})
    n_frames: Optional[int] = field(default=None, metadata={
        "help": f"frames per call with --official (the official script's --n-frames; default {OFFICIAL_N_FRAMES})",
        "minimum": 1})
    batch: int = field(default=4, metadata={
        "help": "windows per forward pass (--official: one call at a time, as the official script)", "minimum": 1})
    frame_batch: int = field(default=256, metadata={
        "help": "frames through the CNN at once (bounds memory; does not change results beyond fp32 rounding)",
        "minimum": 1})
    fps: Optional[float] = field(default=None, metadata={
        "help": "source frame rate for videos whose container does not state it", "minimum": 1, "maximum": 1000})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda", "choices": ("auto", "cpu", "cuda")})
    shard: Optional[str] = field(default=None, metadata={
        "help": "K/N: label only the videos whose name hashes to K of N (0 <= K < N), for N processes or machines "
                "sharing the work (default under torchrun: RANK/WORLD_SIZE, on GPU LOCAL_RANK)",
        "metavar": "K/N"})
    progress: bool = field(default=True, metadata={"help": "no progress bar", "negate": True})


# ----------------------------------------------------------------------------- schedule
def source_index(k: np.ndarray, fps: float) -> np.ndarray:
    """Source frame shown at the time of 20 Hz output frame ``k`` (sample and hold); ``k`` itself when ``fps``
    is within 0.05 Hz of 20."""
    k = np.asarray(k, dtype=np.int64)
    if abs(fps - FPS) <= FPS_TOLERANCE:
        return k
    return np.floor(k * fps / FPS + 1e-9).astype(np.int64)


def resample_indices(num_source: int, fps: float) -> np.ndarray:
    """Source frame index of each 20 Hz output frame of a video with ``num_source`` frames at ``fps``."""
    idx = source_index(np.arange(int(np.ceil(num_source * max(FPS / fps, 1.0))) + 1), fps)
    return idx[idx < num_source]


def window_starts(num_frames: int, window: int, stride: int) -> List[int]:
    """Starts of the windows that cover ``num_frames`` frames: every ``stride`` frames while a whole window fits,
    then one window flush with the end (a video shorter than a window is one short window at 0)."""
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return starts


def owned_ranges(starts: Sequence[int], window: int, num_frames: int) -> List[Tuple[int, int]]:
    """The frames ``[lo, hi)`` each window labels: each frame goes to the window where its context on the
    poorer side (frames before or after it inside the window) is largest; ties go to the earlier window."""
    bounds = [0]
    for a, b in zip(starts[:-1], starts[1:]):
        # In window a frame f has a + window - 1 - f frames after it; in window b, f - b before it.
        bounds.append(min(max((a + window - 1 + b) // 2 + 1, b), a + window))
    bounds.append(num_frames)
    return list(zip(bounds[:-1], bounds[1:]))


# ----------------------------------------------------------------------------- inputs
@dataclass
class VideoJob:
    """One input video and its outputs."""

    source: Path
    fps: float
    frames_estimate: int  # 20 Hz frames, from the container's frame count
    link: bool  # a 20 Hz mp4: hard-linked (or copied) as NAME.mp4; anything else is re-encoded at 20 Hz
    files: RecordingFiles  # OUT/NAME.mp4, OUT/NAME.jsonl


def find_videos(paths: Sequence[str]) -> List[Path]:
    """Video files named by ``paths`` (directories: their videos, sorted, not recursive)."""
    if not paths:
        raise LabelError("--videos: no video files or directories given")
    found: List[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            videos = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES
                            and not q.name.startswith("."))
            if not videos:
                raise LabelError(f"--videos {p}: directory has no videos ({', '.join(VIDEO_SUFFIXES)})")
            found += videos
        elif p.is_file():
            found.append(p)
        else:
            raise LabelError(f"--videos {p}: no such file or directory")
    return list(dict.fromkeys(found))


def probe(path: Path, fps_override: Optional[float]) -> Tuple[float, int]:
    """(frame rate, container frame count) of a video that OpenCV can decode; LabelError otherwise."""
    try:
        check_file_name(path)
    except DataError as err:
        raise LabelError(str(err)) from None
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise LabelError(f"{path}: cannot open the video (not a format OpenCV/ffmpeg can decode)")
        ok, frame = capture.read()
        if not ok or frame is None:
            raise LabelError(f"{path}: the video has no frames that can be decoded")
        fps = fps_override if fps_override is not None else float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not np.isfinite(fps) or fps <= 0:
            raise LabelError(f"{path}: the container does not state a frame rate; pass --fps")
        return fps, max(1, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 1))
    finally:
        capture.release()


def plan(config: LabelConfig, out: Path) -> List[VideoJob]:
    """Validate every input up front (so a bad one fails before anything is written)."""
    jobs: List[VideoJob] = []
    names: Dict[str, Path] = {}
    for path in find_videos(config.videos):
        if path.stem in names:
            raise LabelError(f"{path}: same name as {names[path.stem]}; outputs would collide (rename one)")
        names[path.stem] = path
        fps, count = probe(path, config.fps)
        link = path.suffix.lower() == ".mp4" and abs(fps - FPS) <= FPS_TOLERANCE
        files = recording_files(out, path.stem)
        if not link and _same_file(path, files.video):
            raise LabelError(f"{path}: its 20 Hz re-encoding would replace it as {files.video}; choose another --out")
        jobs.append(VideoJob(path, fps, int(round(count * FPS / fps)), link, files))
    return jobs


def is_done(job: VideoJob) -> bool:
    return job.files.video.is_file() and job.files.actions.is_file()


def iter_frames(job: VideoJob, size: Tuple[int, int],
                keep_full: bool) -> Iterator[Tuple[Optional[np.ndarray], np.ndarray]]:
    """Decode ``job.source`` at 20 Hz: ``(full-resolution RGB frame or None, model-size RGB frame)``."""
    capture = cv2.VideoCapture(str(job.source))
    if not capture.isOpened():
        raise LabelError(f"{job.source}: cannot open the video")
    try:
        src, out = -1, 0
        while True:
            wanted = int(source_index(out, job.fps))
            while src < wanted:
                if not capture.grab():
                    return
                src += 1
            ok, bgr = capture.retrieve()
            if not ok:
                raise LabelError(f"{job.source}: frame {src} cannot be decoded (corrupt video)")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield (rgb if keep_full else None), preprocess_pov({"pov": rgb}, size)
            out += 1
    finally:
        capture.release()


def _prefetch(it: Iterator[Any], depth: int = 64) -> Iterator[Any]:
    """Run ``it`` in a background thread (video decoding overlaps the network; OpenCV releases the GIL)."""
    q: "queue.Queue[Tuple[str, Any]]" = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as err:  # handed to the consumer
            q.put(("error", err))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


# ----------------------------------------------------------------------------- outputs
class PendingVideo:
    """A video being labelled: its window predictions so far and its temporary output files."""

    def __init__(self, job: VideoJob, window: int, stride: int):
        self.job, self.window, self.stride = job, window, stride
        self.files = job.files
        self.tmp_video = partial_path(self.files.video)
        self.tmp_actions = partial_path(self.files.actions)
        self.encoder: Optional[VideoEncoder] = None if job.link else VideoEncoder(self.tmp_video, fps=FPS,
                                                                                   quality="standard")
        self.predictions: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        self.num_frames: Optional[int] = None  # known once decoding ended
        self.expected_windows: Optional[int] = None
        self.covered = 0

    def write_frame(self, frame: Optional[np.ndarray]) -> None:
        if self.encoder is not None:
            h, w = frame.shape[:2]
            self.encoder.write(frame[:h - h % 2, :w - w % 2])  # H.264 needs even sizes: drop an odd last row/column

    @property
    def complete(self) -> bool:
        return self.expected_windows is not None and len(self.predictions) == self.expected_windows

    def finish(self) -> None:
        """Write both files under temporary names, then rename: video first, jsonl last."""
        from .idm_actions import idm_to_env

        n = self.num_frames
        starts = sorted(self.predictions)
        buttons = np.zeros((n, len(BUTTONS)), dtype=np.uint8)
        bins = np.zeros((n, 2), dtype=np.int64)
        for s, (lo, hi) in zip(starts, owned_ranges(starts, self.window, n)):
            b, c = self.predictions[s]
            buttons[lo:hi], bins[lo:hi] = b[lo - s:hi - s], c[lo - s:hi - s]
        if self.encoder is not None:
            self.encoder.close()
        elif not _same_file(self.job.source, self.files.video):
            _link_or_copy(self.job.source, self.tmp_video)
        write_actions(self.tmp_actions, idm_to_env(buttons, bins))
        if self.tmp_video.exists():
            os.replace(self.tmp_video, self.files.video)
        os.replace(self.tmp_actions, self.files.actions)

    def discard(self) -> None:
        if self.encoder is not None:
            self.encoder.abort()
        for p in (self.tmp_video, self.tmp_actions):
            p.unlink(missing_ok=True)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# ----------------------------------------------------------------------------- the run
class WindowBatcher:
    """Collects windows (of equal length) and runs them through the IDM ``batch`` at a time."""

    def __init__(self, idm: Any, batch: int, on_done):
        self.idm, self.batch, self.on_done = idm, batch, on_done
        self.pending: Dict[int, List[Tuple[PendingVideo, int, np.ndarray]]] = {}

    def add(self, video: PendingVideo, start: int, frames: np.ndarray) -> None:
        group = self.pending.setdefault(len(frames), [])
        group.append((video, start, frames))
        if len(group) >= self.batch:
            self._run(len(frames))

    def flush(self) -> None:
        for length in list(self.pending):
            self._run(length)

    def _run(self, length: int) -> None:
        import torch

        group = self.pending.pop(length, [])
        if not group:
            return
        logp = self.idm.predict_windows(torch.from_numpy(np.stack([f for _, _, f in group])))
        buttons = logp["buttons"].argmax(-1).to(torch.uint8).cpu().numpy()
        bins = logp["camera"].argmax(-1).cpu().numpy()
        for i, (video, start, _) in enumerate(group):
            video.predictions[start] = (buttons[i], bins[i])
            self.on_done(video, start, length)


def label_videos(config: LabelConfig, idm: Optional[Any] = None) -> Dict[str, Any]:
    """Label every video of ``config.videos`` into ``config.out``; returns a summary dict.

    ``idm``: an already built :class:`~vpt_agent.idm.VPTIDM` to use instead of ``--idm``/``--model``.
    """
    from tqdm import tqdm

    out = _check(config, need_model=idm is None)
    k, n = parse_shard(config.shard)
    jobs = [j for j in plan(config, out) if in_shard(j.files.name, k, n)]  # every input is validated everywhere
    todo = [j for j in jobs if not is_done(j)]
    summary: Dict[str, Any] = {"out": str(out), "videos": len(jobs), "skipped": len(jobs) - len(todo),
                               "labelled": 0, "frames": 0, "seconds": 0.0, "shard": f"{k}/{n}"}
    if not todo:
        return summary
    idm = idm if idm is not None else _load_idm(config)
    if config.official:
        window = stride = config.n_frames or OFFICIAL_N_FRAMES
    else:
        # An LSTM config may leave timesteps unset (the official LSTM never reads it): the official call length then.
        window = idm.config.timesteps or OFFICIAL_N_FRAMES
        stride = config.stride if config.stride is not None else max(1, window // 2)
    if not 1 <= stride <= window:
        raise LabelError(f"--stride must be between 1 and the window ({window}), got {stride}")
    out.mkdir(parents=True, exist_ok=True)
    size = tuple(idm.config.img_shape[:2])
    bar = tqdm(total=sum(j.frames_estimate for j in todo), unit="frame", desc="label", disable=not config.progress)
    open_videos: List[PendingVideo] = []
    started = time.perf_counter()

    def on_done(video: PendingVideo, start: int, length: int) -> None:
        """A window was run (``length`` 0: decoding ended); finish the video once all its windows were run."""
        new = max(0, start + length - video.covered) if length else 0
        video.covered += new
        bar.update(new)
        if video.complete and video in open_videos:
            video.finish()
            open_videos.remove(video)
            summary["labelled"] += 1
            summary["frames"] += video.num_frames

    batcher = WindowBatcher(idm, config.batch, on_done)
    try:
        for job in todo:
            video = PendingVideo(job, window, stride)
            open_videos.append(video)
            if config.official:
                _stream_calls(video, idm, size, on_done)
            else:
                _stream_windows(video, batcher, size)
        batcher.flush()
    except BaseException:
        for video in open_videos:
            video.discard()
        raise
    finally:
        bar.close()
    summary["seconds"] = time.perf_counter() - started
    return summary


def _stream_windows(video: PendingVideo, batcher: WindowBatcher, size: Tuple[int, int]) -> None:
    """Decode one video, hand each window to the batcher as soon as its frames are there."""
    window, stride = video.window, video.stride
    buffer: "deque[np.ndarray]" = deque(maxlen=window)
    count, next_start, emitted = 0, 0, []
    for full, small in _prefetch(iter_frames(video.job, size, keep_full=video.encoder is not None)):
        video.write_frame(full)
        buffer.append(small)
        count += 1
        if count == next_start + window:
            emitted.append(next_start)
            next_start += stride
            batcher.add(video, emitted[-1], np.stack(buffer))
    if count == 0:
        raise LabelError(f"{video.job.source}: the video has no frames that can be decoded")
    video.num_frames = count
    starts = window_starts(count, window, stride)
    video.expected_windows = len(starts)
    assert starts[:len(emitted)] == emitted
    for s in starts[len(emitted):]:  # the short or end-flush window: the last frames are in the buffer
        frames = list(buffer)[len(buffer) - (count - s):]
        batcher.add(video, s, np.stack(frames))
    batcher.on_done(video, starts[-1], 0)  # finishes the video if its windows have all been run already


def _stream_calls(video: PendingVideo, idm: Any, size: Tuple[int, int], on_done) -> None:
    """Decode one video and label it as the official script does: calls of ``video.window`` frames to the IDM,
    its memory reset for the video and carried from call to call, the last call on the frames left."""
    idm.reset()
    chunk: List[np.ndarray] = []
    count = 0

    def call() -> None:
        start = count - len(chunk)
        prediction = idm.predict_arrays(np.stack(chunk))
        video.predictions[start] = (prediction.buttons, prediction.camera_bins)
        on_done(video, start, len(chunk))
        chunk.clear()

    for full, small in _prefetch(iter_frames(video.job, size, keep_full=video.encoder is not None)):
        video.write_frame(full)
        chunk.append(small)
        count += 1
        if len(chunk) == video.window:
            call()
    if count == 0:
        raise LabelError(f"{video.job.source}: the video has no frames that can be decoded")
    video.num_frames = count
    video.expected_windows = len(range(0, count, video.window))
    if chunk:
        call()  # the frames left; this also finishes the video
    else:
        on_done(video, count, 0)


def _check(config: LabelConfig, need_model: bool = True) -> Path:
    if not config.out:
        raise LabelError("--out: an output directory is required")
    out = Path(config.out)
    problem = out_dir_problem(out)
    if problem:
        raise LabelError(problem)
    cli.check_fields(config, LabelError)
    if config.official and config.stride is not None:
        raise LabelError("--stride applies to overlapping windows, not to --official (use --n-frames)")
    if config.n_frames is not None and not config.official:
        raise LabelError("--n-frames applies only with --official")
    if config.idm and (config.model or config.weights):
        raise LabelError("pass either --idm NAME or --model M --weights W, not both")
    if need_model and not config.idm and not (config.model and config.weights):
        raise LabelError("pass --idm NAME (e.g. 4x-idm) or both --model M and --weights W")
    if need_model:
        from .agent import resolve_device

        try:
            resolve_device(config.device)
        except ValueError as err:
            raise LabelError(f"--device {config.device}: {err}") from None
    return out


def parse_shard(text: Optional[str]) -> Tuple[int, int]:
    """``"K/N"`` -> (K, N); None -> torchrun's ``RANK/WORLD_SIZE`` if set, else (0, 1)."""
    where = "--shard"
    if text is None:
        rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
        if rank is None and world is None:
            return 0, 1
        text, where = f"{rank}/{world}", "RANK/WORLD_SIZE (from torchrun)"
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise LabelError(f"{where} must be K/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= k < n:
        raise LabelError(f"{where} K/N needs 0 <= K < N, got {text!r}")
    return k, n


def in_shard(name: str, k: int, n: int) -> bool:
    """Whether the video named ``name`` (its output stem) belongs to shard ``k`` of ``n``: by a hash of the name, so
    jobs agree whatever order they list the videos in, and videos added later do not move the others."""
    return zlib.crc32(name.encode("utf-8", "surrogateescape")) % n == k


def _load_idm(config: LabelConfig):
    from .idm import VPTIDM

    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and config.device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():  # under torchrun: one GPU per process
            torch.cuda.set_device(int(local_rank) % torch.cuda.device_count())

    kwargs = dict(device=config.device, frame_batch=config.frame_batch)
    if config.idm:
        return VPTIDM.from_pretrained(config.idm, **kwargs)
    return VPTIDM.from_files(config.model, config.weights, **kwargs)


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    """One option per :class:`LabelConfig` field (``--frame-batch`` for ``frame_batch``; ``--no-progress``)."""
    return cli.build_parser(LabelConfig, PROG, "Label videos with an inverse dynamics model: writes VPT "
                                               "recordings (NAME.mp4 + NAME.jsonl) for behavioural cloning.")


def config_from_args(argv: Optional[Sequence[str]] = None) -> LabelConfig:
    """Parse arguments into a :class:`LabelConfig` (exits 2 on a syntax error)."""
    return cli.parse_config(LabelConfig, argv, PROG, "", parser=build_parser())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit code."""
    config = config_from_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_ffmpeg()
    try:  # the imports too: a Ctrl-C while torch loads is an interrupt like any other
        return _run(config)
    except KeyboardInterrupt:
        print("interrupted: finished videos are in the output; run the same command again to continue",
              file=sys.stderr)
        return 130


def _run(config: LabelConfig) -> int:
    from .idm import IDMError
    from .loading import ModelFileError, WeightsFileError, WeightsMismatchError
    from .zoo import UnknownModelError

    try:
        summary = label_videos(config)
    except (LabelError, DataError, IDMError, ModelFileError, WeightsFileError, WeightsMismatchError,
            UnknownModelError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except (VPTError, OSError) as err:  # e.g. the zoo could not fetch the model, the disk is full
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 1
    rate = summary["frames"] / summary["seconds"] if summary["seconds"] else 0.0
    shard = "" if summary["shard"] == "0/1" else f" (shard {summary['shard']})"
    print(f"{summary['out']}{shard}: labelled {summary['labelled']} videos ({summary['skipped']} already done), "
          f"{summary['frames']} frames in {summary['seconds']:.1f} s ({rate:.1f} frames/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
