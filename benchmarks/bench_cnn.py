"""Where a large-batch forward spends its time: the image encoder vs the whole step, per GroupNorm kernel and
with ``torch.compile``.

    python benchmarks/bench_cnn.py --device cuda --batch 256 --dtypes bfloat16 float32 --compile --profile
    python benchmarks/bench_cnn.py --device cpu --batch 8 --iters 5          # runs anywhere (slowly)
    python benchmarks/bench_cnn.py --device cuda --batch 256 --ops --size 2x # single ops of the first stack

Synthetic 1x weights (random init; speed does not depend on the values). For each dtype it times, with CUDA
events (or wall clock on CPU):

* ``encode``: ``net.encode`` alone (frames already on the device -> transformer input), eager, with the CNN's
  default CUDA kernels (``default``: the layout-keeping ``vpt_agent.layers.group_norm_channels_last``, cuDNN's
  convolutions), with PyTorch's GroupNorm (``native-gn``: on CUDA it copies channels-last inputs to NCHW, and the
  next convolution copies them back), or with the first convolution as one matrix product
  (``matmul-first-conv``: ``vpt_agent.layers.conv3x3_as_matmul``, off by default);
* ``step``: one whole ``StepEngine`` step (encoder, transformer with memory, heads), replayed from a CUDA graph;
* with ``--compile``: ``torch.compile(net.encode)`` (compile time reported separately);
* with ``--profile``: the ops and kernels that take the most GPU time in one eager encode (``default``).
* with ``--ops``: single ops at the first stack's sizes of ``--size`` (each ``--batch``): the first convolution
  for 3, 4, 8 and 16 input channels (cuDNN, channels-last), the same as one matrix product (``conv3x3_as_matmul``),
  the max-pool and an in-place ReLU of its output (64 channels for 1x, 128 for 2x); and the fp32 encoder with
  cuDNN's TF32 on and off.

Prints one line per measurement and a JSON document (``--json PATH`` also writes it).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


#: The CNN's kernels on CUDA: the defaults (our layout-keeping GroupNorm, cuDNN's convolutions), PyTorch's
#: GroupNorm instead, or the first convolution as one matrix product.
VARIANTS = ("default", "native-gn", "matmul-first-conv")


def use_variant(name: str) -> None:
    from vpt_agent import layers

    layers.CHANNELS_LAST_GROUP_NORM = name != "native-gn"
    layers.FEW_CHANNEL_CONV_AS_MATMUL = name == "matmul-first-conv"


def _timer(device):
    import torch

    def run(fn, iters: int, warmup: int) -> float:
        for _ in range(warmup):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / iters
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) * 1000 / iters

    return run


def two_streams(cfg, device, batch: int, iters: int, warmup: int) -> dict:
    """Two engines (two pipelined groups' policies) replayed serially vs concurrently on two streams."""
    import torch

    from vpt_agent.inference import StepEngine
    from vpt_agent.policy import VPTPolicy

    torch.manual_seed(0)
    policy = VPTPolicy(cfg).to(device, memory_format=torch.channels_last).eval()
    frames = torch.randint(0, 256, (batch, *cfg.img_shape), dtype=torch.uint8, device=device)
    first = torch.zeros(batch, dtype=torch.bool, device=device)
    with torch.inference_mode():
        engines = [StepEngine(policy, batch, cuda_graph=True) for _ in range(2)]
        streams = [torch.cuda.Stream(device) for _ in range(2)]
        timer = _timer(device)

        def serial():
            for engine in engines:
                engine(frames, first)

        def concurrent():
            main_stream = torch.cuda.current_stream(device)
            for engine, stream in zip(engines, streams):
                stream.wait_stream(main_stream)
                with torch.cuda.stream(stream):
                    engine(frames, first)
            for stream in streams:
                main_stream.wait_stream(stream)

        one = timer(lambda: engines[0](frames, first), iters, warmup)
        return {"part": "two-engines", "batch": batch, "one_ms": one, "serial_ms": timer(serial, iters, warmup),
                "concurrent_ms": timer(concurrent, iters, warmup)}


def single_ops(cfg, device, dtype_name: str, batch: int, iters: int, warmup: int, report) -> None:
    """``--ops``: what the first stack's ops cost on their own (see the module docstring)."""
    import torch
    from torch.nn import functional as F

    from vpt_agent.layers import conv3x3_as_matmul

    dtype = getattr(torch, dtype_name)
    timer = _timer(device)
    h, w = cfg.img_shape[:2]
    c_out = cfg.chans[0]
    with torch.inference_mode():
        for c in (3, 4, 8, 16):
            x = torch.randn(batch, h, w, c, device=device, dtype=dtype).permute(0, 3, 1, 2)  # channels-last view
            weight = torch.randn(c_out, c, 3, 3, device=device, dtype=dtype).to(memory_format=torch.channels_last)
            bias = torch.randn(c_out, device=device, dtype=dtype)
            report(part="op", op=f"first conv, {c} input channels", dtype=dtype_name, batch=batch,
                   ms=timer(lambda: F.conv2d(x, weight, bias, padding=1), iters, warmup))
            if c == 3:
                report(part="op", op="first conv as one matrix product", dtype=dtype_name, batch=batch,
                       ms=timer(lambda: conv3x3_as_matmul(x, weight, bias), iters, warmup))
        y = torch.randn(batch, h, w, c_out, device=device, dtype=dtype).permute(0, 3, 1, 2)
        report(part="op", op="max-pool 3x3/2 of its output", dtype=dtype_name, batch=batch,
               ms=timer(lambda: F.max_pool2d(y, 3, 2, 1), iters, warmup))
        report(part="op", op="in-place ReLU of its output", dtype=dtype_name, batch=batch,
               ms=timer(lambda: F.relu(y, inplace=True), iters, warmup))


def tf32_encode(cfg, device, batch: int, iters: int, warmup: int, report) -> None:
    """``--ops``: the fp32 encoder with cuDNN's TF32 convolutions (PyTorch's default) and without."""
    import torch

    from vpt_agent.policy import VPTPolicy

    policy = VPTPolicy(cfg).to(device, memory_format=torch.channels_last).eval()
    frames = torch.randint(0, 256, (batch, *cfg.img_shape), dtype=torch.uint8, device=device)
    before = torch.backends.cudnn.allow_tf32
    try:
        for tf32 in (True, False):
            torch.backends.cudnn.allow_tf32 = tf32
            with torch.inference_mode():
                ms = _timer(device)(lambda: policy.net.encode(frames), iters, warmup)
            report(part="encode", kernels="default", dtype="float32", batch=batch, cudnn_tf32=tf32, ms=ms,
                   frames_per_s=batch * 1000 / ms)
    finally:
        torch.backends.cudnn.allow_tf32 = before


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="1x")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, nargs="+", default=[256])
    p.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also time torch.compile(net.encode)")
    p.add_argument("--freeze", action="store_true",
                   help="compile with inductor's freezing (weights as constants, prepacked for oneDNN on CPU)")
    p.add_argument("--profile", action="store_true", help="print the top kernels of one eager encode")
    p.add_argument("--ops", action="store_true",
                   help="only time single ops of the first stack (and the fp32 encoder with/without TF32 on CUDA)")
    p.add_argument("--streams", type=int, nargs="*", default=[],
                   help="also: two graph-replayed engines of each of these batch sizes, one after the other vs on "
                        "two CUDA streams at once (float32)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    import torch

    from vpt_agent.config import PolicyConfig
    from vpt_agent.inference import StepEngine, cast_for_inference
    from vpt_agent.policy import VPTPolicy

    device = torch.device(a.device)
    timer = _timer(device)
    cfg = PolicyConfig.official(a.size)
    rows = []

    def report(**row):
        rows.append(row)
        print(json.dumps(row), flush=True)

    if a.ops:
        for batch in a.batch:
            for dtype_name in a.dtypes:
                single_ops(cfg, device, dtype_name, batch, a.iters, a.warmup, report)
            if device.type == "cuda":
                tf32_encode(cfg, device, batch, a.iters, a.warmup, report)
        a.dtypes, a.streams = [], []  # nothing else

    for dtype_name in a.dtypes:
        dtype = getattr(torch, dtype_name)
        torch.manual_seed(0)
        policy = VPTPolicy(cfg).to(device, memory_format=torch.channels_last).eval()
        if dtype != torch.float32:
            cast_for_inference(policy, dtype)
        for batch in a.batch:
            frames = torch.randint(0, 256, (batch, *cfg.img_shape), dtype=torch.uint8, device=device)
            first = torch.zeros(batch, dtype=torch.bool, device=device)
            with torch.inference_mode():
                for variant in VARIANTS:
                    use_variant(variant)
                    ms = timer(lambda: policy.net.encode(frames), a.iters, a.warmup)
                    report(part="encode", kernels=variant, dtype=dtype_name, batch=batch, ms=ms,
                           frames_per_s=batch * 1000 / ms)
                    if device.type == "cpu":
                        engine = StepEngine(policy, batch)
                        ms = timer(lambda: engine(frames, first), a.iters, a.warmup)
                        report(part="step", kernels=variant, dtype=dtype_name, batch=batch, ms=ms,
                               frames_per_s=batch * 1000 / ms)
                    if device.type == "cuda":
                        engine = StepEngine(policy, batch, cuda_graph=True)
                        ms = timer(lambda: engine(frames, first), a.iters, a.warmup)
                        report(part="step", kernels=variant, dtype=dtype_name, batch=batch, ms=ms,
                               frames_per_s=batch * 1000 / ms, capture_s=engine.capture_s)
                        del engine
                use_variant(VARIANTS[0])
                if a.profile and device.type == "cuda":
                    from torch.profiler import ProfilerActivity, profile

                    policy.net.encode(frames)
                    torch.cuda.synchronize()
                    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
                        policy.net.encode(frames)
                        torch.cuda.synchronize()
                    print(prof.key_averages(group_by_input_shape=True).table(
                        sort_by="self_cuda_time_total", row_limit=14, max_name_column_width=28,
                        max_shapes_column_width=70), flush=True)
            if a.compile:
                import torch._inductor.config as inductor_config

                inductor_config.freezing = a.freeze
                with torch.inference_mode():
                    reference = policy.net.encode(frames).float()
                for variant in VARIANTS[::-1] if device.type == "cuda" else VARIANTS[:1]:
                    use_variant(variant)
                    torch._dynamo.reset()
                    compiled = torch.compile(policy.net.encode)
                    t0 = time.perf_counter()
                    try:
                        with torch.inference_mode():
                            compiled(frames)
                            if device.type == "cuda":
                                torch.cuda.synchronize()
                            compile_s = time.perf_counter() - t0
                            ms = timer(lambda: compiled(frames), a.iters, a.warmup)
                            max_diff = (compiled(frames).float() - reference).abs().max().item()
                    except Exception as err:  # report and go on: compile support varies by machine
                        report(part="encode-compiled", kernels=variant, dtype=dtype_name, batch=batch,
                               error=f"{type(err).__name__}: {str(err)[:300]}")
                        continue
                    report(part="encode-compiled", kernels=variant, dtype=dtype_name, batch=batch, ms=ms,
                           frames_per_s=batch * 1000 / ms, compile_s=compile_s, freezing=a.freeze,
                           max_abs_diff_vs_eager=max_diff)
                use_variant(VARIANTS[0])
        policy = None  # free it before the next dtype
        if device.type == "cuda":
            torch.cuda.empty_cache()

    for batch in a.streams:
        report(**two_streams(cfg, device, batch, a.iters, a.warmup))

    doc = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                       "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
                       "cpu_capability": torch.backends.cpu.get_cpu_capability()}, "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=2))
    return doc


if __name__ == "__main__":
    main()
