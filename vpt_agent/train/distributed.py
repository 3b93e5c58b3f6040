"""Data-parallel training: ``torchrun --nproc_per_node N -m vpt_agent.train ...`` (one process per GPU).

torchrun starts N copies of the command and tells each its ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. The B lanes
of the one data plan are split into N equal shares, so the run sees the same windows in the same order as one
process with B lanes would, and computes the same loss:

    process r: lanes r*B/N .. (r+1)*B/N - 1 --count real steps--> all-reduce: C, the real steps of all B lanes
               --forward, NLL summed over its lanes, / C--> backward
               --gradients (one flat buffer) + its loss share--> all-reduce (sum): the B-lane gradient and loss
               --clip, Adam--> the same step in every process (weights never travel; they stay equal)

Process 0 writes everything (metrics, checkpoints, final weights, the plot) and shows the progress bar. A
checkpoint holds the memories of all B lanes (gathered from every process), so a run can resume with another
number of processes, or with none. Backend: NCCL for CUDA, gloo for CPU.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import List, Sequence

import torch
from torch import distributed as dist

from ..policy import BlockState
from .checkpoint import state_to_cpu

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    """This process's place in the run: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that writes files and reports (rank 0)."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def lanes(self, batch: int) -> range:
        """The lanes of a ``batch``-lane plan this process trains (``batch`` must divide evenly)."""
        share = batch // self.world
        return range(self.rank * share, (self.rank + 1) * share)

    # -------------------------------------------------------------- collectives (no-ops in one process)
    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over all processes, in place."""
        if self.parallel:
            dist.all_reduce(t)
        return t

    def sum_gradients(self, params: Sequence[torch.nn.Parameter], extra: torch.Tensor) -> torch.Tensor:
        """Every process's gradients summed into each one's ``.grad`` (one all-reduce of one flat buffer that also
        carries ``extra``, a float32 tensor: returned summed)."""
        if not self.parallel:
            return extra
        grads = [p.grad for p in params if p.grad is not None]  # the same list in every process: same graph
        flat = torch.cat([g.reshape(-1).float() for g in grads] + [extra.reshape(-1).float()])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        return flat[offset:].view_as(extra)

    def gather_state(self, state: Sequence[BlockState]) -> List[List[torch.Tensor]]:
        """The recurrent state of all B lanes (every process's share concatenated in lane order), on the CPU."""
        if not self.parallel:
            return state_to_cpu(state)
        gathered = []
        for mem in state:
            tensors = []
            for t in mem:
                raw = t.detach().contiguous()
                raw = raw.to(torch.uint8) if raw.dtype == torch.bool else raw  # NCCL has no bool
                parts = [torch.empty_like(raw) for _ in range(self.world)]
                dist.all_gather(parts, raw)
                tensors.append(torch.cat(parts).to(t.dtype).cpu())
            gathered.append(tensors)
        return gathered

    def share_of(self, saved: Sequence[Sequence[torch.Tensor]], batch: int) -> List[List[torch.Tensor]]:
        """This process's lanes of a saved all-lane state (as :meth:`gather_state` returns it)."""
        lanes = self.lanes(batch)
        return [[t[lanes.start:lanes.stop] for t in mem] for mem in saved]

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Process 0's parameters and buffers everywhere (seeded inits agree anyway; this makes it certain)."""
        if self.parallel:
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()

    def close(self) -> None:
        if self.parallel and dist.is_initialized():
            dist.destroy_process_group()


def is_main_process() -> bool:
    """Whether this process reports (rank 0 of a torchrun group, or a process running alone)."""
    return int(os.environ.get("RANK", "0")) == 0


def from_environment(device: torch.device) -> Group:
    """The group torchrun described in the environment (``WORLD_SIZE`` > 1), its process group initialised;
    ``Group()`` when the process runs alone. On CUDA each process takes GPU ``LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group()
    group = Group(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        if group.local_rank >= torch.cuda.device_count():
            from .trainer import TrainConfigError

            raise TrainConfigError(f"process {group.rank} (local rank {group.local_rank}) needs a GPU of its own, "
                                   f"this machine has {torch.cuda.device_count()}: start fewer processes per node")
        torch.cuda.set_device(group.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    logger.info("data-parallel training: process %d of %d", group.rank, group.world)
    return group
