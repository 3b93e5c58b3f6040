"""Behavioural cloning (fine-tuning) of VPT policies on recordings: ``python -m vpt_agent.train``.

Submodules: ``loss`` (targets and NLL), ``config`` (options), ``batches`` (windows of episodes),
``trainer`` (the optimisation loop), ``checkpoint`` (atomic save/resume), ``distributed`` (data-parallel
processes under torchrun), ``optim``, ``targets``, ``cli``.
"""
