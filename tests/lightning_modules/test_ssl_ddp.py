"""DDP on CPU (gloo): a SimCLR step on 2 processes, each with half of a global batch, gives the loss and the
update of one process on the whole batch (negatives gathered from every process by lightly's
``gather_distributed``); the kNN monitor gathers uneven shares of its memory bank."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from medtransfer.lightning_modules import SSLPretrain
from medtransfer.lightning_modules.ssl.base import Progress
from medtransfer.lightning_modules.ssl.knn_monitor import gather_rows

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed for DDP on CPU")

GLOBAL_BATCH = 8
WORLD = 2


class Step(nn.Module):
    """The SimCLR loss of a batch of views as a module's forward, so DDP can wrap it."""

    def __init__(self, model: SSLPretrain) -> None:
        super().__init__()
        self.method = model.method

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return self.method.loss([first, second], 2, Progress(0, 1, 0, 1))


def simclr() -> SSLPretrain:
    """A backbone and head without batch statistics (LayerNorm ViT, no BatchNorm in the head): BatchNorm
    would see each process's half batch, and SyncBatchNorm needs a GPU."""
    torch.manual_seed(0)
    return SSLPretrain(method="simclr", backbone="test_vit", backbone_kwargs={"img_size": 32},
                       method_args={"hidden_dim": 32, "output_dim": 16, "batch_norm": False,
                                    "temperature": 0.2})


def global_views() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return tuple(torch.randint(0, 256, (GLOBAL_BATCH, 3, 32, 32), dtype=torch.uint8, generator=generator)
                 for _ in range(2))


def one_step(step: nn.Module, parameters, first, second) -> torch.Tensor:
    optimizer = torch.optim.SGD(parameters, lr=0.5)
    loss = step(first, second)
    loss.backward()
    optimizer.step()
    return loss.detach()


def worker(rank: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)
    try:
        model = simclr()
        step = nn.parallel.DistributedDataParallel(Step(model))
        first, second = global_views()
        share = slice(rank * GLOBAL_BATCH // WORLD, (rank + 1) * GLOBAL_BATCH // WORLD)
        loss = one_step(step, step.parameters(), first[share], second[share])
        dist.all_reduce(loss)
        rows = gather_rows(torch.arange(3 - rank, dtype=torch.float32).unsqueeze(1) + 10 * rank)
        if rank == 0:
            torch.save({"loss": loss / WORLD, "backbone": model.backbone.state_dict(), "rows": rows}, out)
    finally:
        dist.destroy_process_group()


def test_two_process_simclr_step_equals_one_process_on_the_global_batch(tmp_path: Path, one_thread):
    out = tmp_path / "ddp.pt"
    mp.spawn(worker, args=(str(tmp_path / "rendezvous"), str(out)), nprocs=WORLD, join=True)
    distributed = torch.load(out, weights_only=True)

    model = simclr()
    step = Step(model)
    loss = one_step(step, step.parameters(), *global_views())
    assert float(distributed["loss"]) == pytest.approx(float(loss), abs=1e-5)
    for key, value in model.backbone.state_dict().items():  # the same update, not just the same loss
        torch.testing.assert_close(distributed["backbone"][key], value, atol=1e-5, rtol=1e-4)
    # the kNN monitor's bank: rank 0 held 3 rows, rank 1 held 2; every row once, in rank order
    assert distributed["rows"].squeeze(1).tolist() == [0.0, 1.0, 2.0, 10.0, 11.0]
