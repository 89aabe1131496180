"""``medtransfer extract``: compute (or reuse) the feature stores of a run's config before training.

Takes the same ``--config`` files and ``--data.*``/``--model.*`` overrides as ``medtransfer fit``; the model
must be a frozen-backbone model (LinearProbe, LinearSweep, KNN, frozen DVME). Stores land in the model's
``features_dir``, exactly where ``fit`` looks for them. For several GPUs run it under ``torchrun``: every
process extracts its shard and rank 0 assembles the store. It extracts in the trainer's precision as ``fit``
does (``--trainer.precision bf16-mixed``: under bfloat16 autocast, a store of its own) and in the model's
``memory_format``.
"""

from __future__ import annotations

import argparse
import os

from ..runtime.logs import configure_logging
from ..runtime.ranks import is_rank_zero, local_process_rank
from ..task import SPLITS
from ..utils.flags import VerbParser

FIT_OPTIONS = """fit options it reads (spelled as for `medtransfer fit`; see `medtransfer fit --help`):
  --config FILE                 the run's config files (data, model and trainer pieces), repeatable
  --data.* / --data CLASS       the dataset whose splits are embedded (class_path, init_args.root, ...)
  --model.* / --model CLASS     a frozen-backbone model: its backbones and features_dir
  --trainer.accelerator, --trainer.devices
                                the device the backbones run on
  --trainer.precision           bf16-mixed (or 16-mixed): extract under autocast, as fit does in that
                                precision (other --trainer.* are accepted, unused)
  --seed_everything             the run seed
Every other fit option (--ckpt_path, --test_after_fit, --intervals.*) is accepted and ignored.

example: medtransfer extract --config configs/experiments/synthetic_linear.yaml"""


def main(argv: list[str]) -> int:
    parser = VerbParser(
        prog="medtransfer extract",
        description="Compute (or reuse) the feature stores of a frozen-backbone config, where `medtransfer "
        "fit` will look for them. Every argument but --splits is a fit option.",
        epilog=FIT_OPTIONS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS, help="splits to extract")
    configure_logging()
    args, rest = parser.parse_known_args(argv)
    if not rest:
        parser.error("give the run's config, e.g. --config configs/experiments/synthetic_linear.yaml")

    from ..features import store_for
    from ..lightning_modules.frozen import FrozenBackboneModule
    from ..run.config import instantiate, parse_run

    parts = instantiate(parse_run("fit", rest))  # the fit parser and classes; no trainer runs
    model, datamodule = parts.model, parts.data
    if not isinstance(model, FrozenBackboneModule):
        parser.error(f"model {type(model).__name__} has no frozen backbones to extract; use a LinearProbe, "
                     "LinearSweep, KNN or frozen DVME config")
    device = _init_distributed(parts.trainer.strategy.root_device)
    trainer = parts.trainer
    for backbone in model.feature_backbones():
        # weights in the dtype fit gives them (bf16-true, 64-true); the mixed precisions leave them float32
        trainer.precision_plugin.convert_module(backbone).to(device)
        for split in args.splits:
            store = store_for(backbone, datamodule, split, model.features_dir, trainer.precision)
            if is_rank_zero():
                print(f"{backbone.name:<32} {split:<5} {len(store):>8} x {store.dim:<5} {store.path}")
    return 0  # the command closes the process group (runtime.exits.close_process_group)


def _init_distributed(root_device):
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1); the device of this process."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = local_process_rank()
    cuda = root_device.type == "cuda"
    if world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    return torch.device("cuda", local_rank) if cuda else root_device
