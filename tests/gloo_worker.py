"""A spawn worker for tests/test_distributed.py (imports only torch and nmsnn.lit.distributed, so
that each spawned process starts fast)."""

from __future__ import annotations


def gather_then_exit(rank: int, port: int) -> None:
    """A ``torch.multiprocessing.spawn`` worker: join a two-process gloo group, gather tensors a
    few times (each output tensor a Python object), register nmsnn's exit handler (as
    ``SpikingModule.setup`` does) and return, which exits the process."""
    import os

    import torch
    import torch.distributed as dist

    from nmsnn.lit.distributed import destroy_process_group_at_exit

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    assert destroy_process_group_at_exit()
    for _ in range(20):
        out = [torch.empty(1000) for _ in range(2)]
        dist.all_gather(out, torch.randn(1000))
        del out
