"""Why bfloat16 does not pay at B=1 on a CPU, even with AMX: the 1x step's parts in fp32 and bf16.

    python benchmarks/bench_cpu_bf16.py                      # all CPU threads; ~2 min with the encoder compile
    python benchmarks/bench_cpu_bf16.py --threads 2 --steps 5 --agreement 20
    python benchmarks/bench_cpu_bf16.py --threads 2 --autotune   # + whole steps compiled with max-autotune (~5 min)

Synthetic 1x weights (random init). At B=1 a 1x step is the image encoder (~14 convolutions over one small image)
and then ~30 matrix-vector products (~240 MB of fp32 weights, read once per step) with small ops between them.
Prints, with the machine's CPU flags:

* one matrix-vector product per linear shape of a transformer of width ``--gemv-hidsize`` (default 2048, the 2x
  model's; the 1x model's are half as wide): fp32 ``F.linear``, bf16 ``F.linear`` (oneDNN on CPUs with native bf16),
  bf16 with oneDNN off (PyTorch's own kernel), ``torch.mv``, and bf16 ``F.linear`` of the row copied to 16 rows (an
  AMX tile's height: if oneDNN streams weights faster for 16 rows than for 1, padding B=1 would pay), and oneDNN's
  kernel on weights pre-packed once (fp32 and bf16, as inductor's freezing packs them), as ms and GB/s of weights
  read;
* whole ``StepEngine`` steps: fp32 eager; bf16 eager; bf16 with the linears' oneDNN off; the ImpalaCNN alone in
  bf16 (the rest fp32); bf16 with the image encoder compiled by inductor with frozen weights (compile time
  reported); the encoder alone in each form;
* the bf16 variant's argmax agreement with fp32 over ``--agreement`` random frames;
* with ``--autotune``: whole steps compiled as ``VPTAgent(compile="max-autotune")`` compiles them, fp32 and bf16
  (inductor's C++ matrix products on pre-packed weights, AMX tiles for bf16 where the CPU has them), timed in
  rounds with the eager fp32 step, and the autotuned bf16 step's agreement with eager fp32.

The variants that patch ``nn.Linear`` exist only in this benchmark (an experiment, not an agent option).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def shapes(hidsize: int):
    """(in, out) of a VPT transformer's linears of this width: MLP in, MLP out (ratio 4), the buttons head."""
    return ((hidsize, 4 * hidsize), (4 * hidsize, hidsize), (hidsize, 8641))


def _time(fn, iters: int, warmup: int = 3) -> float:
    """ms per call on the CPU (``bench_cnn``'s timer)."""
    import torch
    from bench_cnn import _timer

    return _timer(torch.device("cpu"))(fn, iters, warmup)


@contextlib.contextmanager
def linears_without_onednn():
    """Every bf16 ``nn.Linear`` on one row runs PyTorch's own kernel instead of oneDNN's."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    original = nn.Linear.forward

    def forward(self, x):
        if x.dtype == torch.bfloat16 and x.dim() == 2 and x.shape[0] == 1:
            with torch.backends.mkldnn.flags(enabled=False):
                return F.linear(x, self.weight, self.bias)
        return original(self, x)

    nn.Linear.forward = forward
    try:
        yield
    finally:
        nn.Linear.forward = original


def gemv_rows(hidsize: int, iters: int, report) -> None:
    import torch
    from torch.nn import functional as F

    for n_in, n_out in shapes(hidsize):
        w32, x32, b32 = torch.randn(n_out, n_in), torch.randn(1, n_in), torch.randn(n_out)
        w, x, b = w32.bfloat16(), x32.bfloat16(), b32.bfloat16()

        def no_onednn():
            with torch.backends.mkldnn.flags(enabled=False):
                return F.linear(x, w, b)

        x16 = x.expand(16, n_in).contiguous()  # one AMX tile of rows: does oneDNN stream the weights faster?
        kernels = [("fp32 F.linear", lambda: F.linear(x32, w32, b32), 4),
                   ("bf16 F.linear", lambda: F.linear(x, w, b), 2),
                   ("bf16 F.linear, oneDNN off", no_onednn, 2),
                   ("bf16 torch.mv", lambda: torch.mv(w, x[0]), 2),
                   ("bf16 F.linear, the row copied to 16 rows", lambda: F.linear(x16, w, b), 2)]
        for dtype_name, (wt, xt, bt), itemsize in (("fp32", (w32, x32, b32), 4), ("bf16", (w, x, b), 2)):
            # oneDNN's kernel on weights packed once, as inductor's freezing packs them (plain F.linear
            # re-lays them out for its kernel on every call)
            try:
                packed = torch.ops.mkldnn._reorder_linear_weight(wt, 1)
            except (AttributeError, RuntimeError) as err:  # bf16 needs AVX-512 (BW/VL/DQ) or AVX-NE-CONVERT
                report(part="gemv", shape=f"{n_in}->{n_out}", kernel=f"{dtype_name} oneDNN pre-packed",
                       error=str(err)[:120])
                continue
            kernels.append((f"{dtype_name} oneDNN pre-packed", lambda xt=xt, packed=packed, bt=bt:
                            torch.ops.mkldnn._linear_pointwise(xt, packed, bt, "none", [], ""), itemsize))
        for name, fn, itemsize in kernels:
            ms = _time(fn, iters)
            report(part="gemv", shape=f"{n_in}->{n_out}", kernel=name, ms=ms, gb_per_s=w.numel() * itemsize / ms / 1e6)


def cnn_only_bf16(p32):
    """A copy of the fp32 policy whose ImpalaCNN alone runs in bf16 (the rest, with its fp32 matrix-vector
    products, stays fp32): what bf16 gives where only the convolutions gain from it."""
    import copy

    import torch

    policy = copy.deepcopy(p32)
    cnn = policy.net.img_process.cnn.to(torch.bfloat16)
    forward = cnn.forward
    cnn.forward = lambda x: forward(x.bfloat16()).float()
    return policy


def policies():
    """The 1x config and two copies of one random 1x policy: fp32, and bf16 as the agent casts it."""
    import torch

    from vpt_agent.config import PolicyConfig
    from vpt_agent.inference import cast_for_inference
    from vpt_agent.policy import VPTPolicy

    cfg = PolicyConfig.official("1x")
    torch.manual_seed(0)
    p32 = VPTPolicy(cfg).eval().to(memory_format=torch.channels_last)
    p16 = VPTPolicy(cfg).eval().to(memory_format=torch.channels_last)
    p16.load_state_dict(p32.state_dict())
    cast_for_inference(p16, torch.bfloat16)
    return cfg, p32, p16


def agreement_rows(name: str, e32, e16, cfg, agreement: int, report) -> None:
    """Argmax agreement of two engines' buttons and camera over ``agreement`` random frames (one episode)."""
    import torch

    e32.reset()
    e16.reset()
    same_buttons = same_camera = 0
    gen = torch.Generator().manual_seed(1)
    for t in range(agreement):
        f = torch.randint(0, 256, (1, *cfg.img_shape), dtype=torch.uint8, generator=gen)
        a, b = e32(f, torch.tensor([t == 0])), e16(f, torch.tensor([t == 0]))
        same_buttons += int(a.logp["buttons"].argmax() == b.logp["buttons"].argmax())
        same_camera += int(a.logp["camera"].argmax() == b.logp["camera"].argmax())
    if agreement:
        report(part="agreement", variant=name, steps=agreement, buttons=same_buttons / agreement,
               camera=same_camera / agreement)


def autotune_rows(steps: int, agreement: int, report) -> None:
    """Whole steps compiled with ``compile="max-autotune"`` (fp32, bf16) against the eager fp32 step."""
    import torch

    from vpt_agent.inference import StepEngine

    cfg, p32, p16 = policies()
    frame = torch.randint(0, 256, (1, *cfg.img_shape), dtype=torch.uint8)
    first = torch.zeros(1, dtype=torch.bool)
    engines = {"fp32 eager": StepEngine(p32, 1)}
    with torch.inference_mode():
        for name, policy in (("fp32 max-autotune", p32), ("bf16 max-autotune", p16)):
            engines[name] = StepEngine(policy, 1, compile="max-autotune")
            start = time.perf_counter()
            engines[name](frame, first)
            report(part="compile", what=f"{name} step", s=time.perf_counter() - start)
        times = {name: [] for name in engines}
        for _ in range(3):  # rounds: a machine's drift hits every variant alike
            for name, engine in engines.items():
                times[name].append(_time(lambda: engine(frame, first), max(1, steps // 3)))
        for name, ms in times.items():
            report(part="step", variant=name, ms=sorted(ms)[1], rounds=ms)
        agreement_rows("bf16 max-autotune vs fp32 eager", engines["fp32 eager"], engines["bf16 max-autotune"], cfg,
                       agreement, report)


def step_rows(steps: int, agreement: int, report) -> None:
    import torch

    from vpt_agent.inference import StepEngine, compile_frozen

    cfg, p32, p16 = policies()
    frame = torch.randint(0, 256, (1, *cfg.img_shape), dtype=torch.uint8)
    first = torch.zeros(1, dtype=torch.bool)
    e32, e16 = StepEngine(p32, 1), StepEngine(p16, 1)
    with torch.inference_mode():
        report(part="step", variant="fp32 eager", ms=_time(lambda: e32(frame, first), steps))
        report(part="step", variant="bf16 eager", ms=_time(lambda: e16(frame, first), steps))
        with linears_without_onednn():
            report(part="step", variant="bf16, linears without oneDNN", ms=_time(lambda: e16(frame, first), steps))
        e_mixed = StepEngine(cnn_only_bf16(p32), 1)
        report(part="step", variant="bf16 ImpalaCNN only (the rest fp32)",
               ms=_time(lambda: e_mixed(frame, first), steps))
        eager_encode = p16.net.encode
        start = time.perf_counter()
        compiled = compile_frozen(eager_encode)
        compiled(frame)
        report(part="compile", what="bf16 encoder, frozen weights", s=time.perf_counter() - start)
        report(part="encode", variant="fp32 eager", ms=_time(lambda: p32.net.encode(frame), steps))
        report(part="encode", variant="bf16 eager", ms=_time(lambda: eager_encode(frame), steps))
        report(part="encode", variant="bf16 compiled", ms=_time(lambda: compiled(frame), steps))
        p16.net.encode = compiled
        report(part="step", variant="bf16, compiled encoder", ms=_time(lambda: e16(frame, first), steps))
        with linears_without_onednn():
            report(part="step", variant="bf16, compiled encoder, linears without oneDNN",
                   ms=_time(lambda: e16(frame, first), steps))
            agreement_rows("bf16, compiled encoder, linears without oneDNN", e32, e16, cfg, agreement, report)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--iters", type=int, default=100, help="timed calls per matrix-vector product")
    p.add_argument("--gemv-hidsize", type=int, default=2048, help="transformer width of the matrix-vector rows")
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    p.add_argument("--agreement", type=int, default=200, help="random frames for the agreement (0: skip)")
    p.add_argument("--autotune", action="store_true", help="also whole steps compiled with max-autotune")
    p.add_argument("--only-autotune", action="store_true", help="only those (skip the other parts)")
    p.add_argument("--json", type=Path)
    a = p.parse_args()

    from bench_agent import cpu_rows

    machine, rows, report = cpu_rows(a.threads)

    if not a.only_autotune:
        gemv_rows(a.gemv_hidsize, a.iters, report)
        step_rows(a.steps, a.agreement, report)
    if a.autotune or a.only_autotune:
        autotune_rows(a.steps, a.agreement, report)
    if a.json:
        a.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
