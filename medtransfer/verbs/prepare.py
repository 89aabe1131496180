"""``medtransfer prepare``: check a dataset's layout (downloading it where ``download: true`` allows), print
its splits, optionally write the exact split of every sample for publication, and with ``--cache`` convert
its images once into the resized cache that training then reads (docs/running-fast.md)."""

from __future__ import annotations

import numpy as np
from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser

from ..datamodules.base import SPLITS, MedicalDataModule
from ..datamodules.cache import CacheError
from ..datamodules.file_backed import FileBackedDataModule
from ..run.parse_errors import config_error
from ..runtime.logs import configure_logging


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="medtransfer prepare",
        description="Read a dataset as `medtransfer fit` would, report its splits and label counts, and "
        "write id,split,label,patient for every sample with --splits_file. --config takes data pieces "
        "(configs/data/*.yaml). The fit options it reads: --config (data pieces) and --data.*; no --model.* "
        "or --trainer.*.",
        epilog="example: medtransfer prepare --config configs/data/aptos2019.yaml "
        "--data.init_args.root /data/aptos2019 --splits_file aptos2019_splits.csv; "
        "medtransfer prepare --config configs/data/eyepacs.yaml --data.init_args.cache_dir /scratch/cache "
        "--cache",
        default_env=False,
        exit_on_error=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="a data config piece")
    parser.add_subclass_arguments(MedicalDataModule, "data", required=True)
    parser.add_argument("--splits_file", type=str | None, default=None,
                        help="CSV to write with the split of every sample (official and carved splits)")
    parser.add_argument("--cache", type=bool, default=False, nargs="?", const=True,
                        help="decode every image once into the resized cache under data.init_args.cache_dir "
                        "(short side data.init_args.cache_size, default image_size; fundus borders cropped), "
                        "replacing a stale one; fit then reads it")
    parser.add_argument("--cache_workers", type=int | None, default=None,
                        help="processes decoding images for --cache (default: every CPU)")
    return parser


def main(argv: list[str]) -> int:
    configure_logging()
    parser = build_parser()
    try:
        config = parser.parse_args(argv)
    except ArgumentError as error:  # one line naming the key, as the run verbs say theirs
        raise config_error(error, "prepare", list(parser.get_defaults().keys())) from None
    datamodule: MedicalDataModule = parser.instantiate_classes(config).data
    if config.cache:
        if not isinstance(datamodule, FileBackedDataModule) or datamodule.cache_dir is None:
            raise CacheError(
                f"--cache: {datamodule.name} has no prepared cache to write: give an image-file dataset "
                "(EyePACS, APTOS2019, ChestXray14, ChestXrayPneumonia, ImageFolder, CSVDataset) and "
                "--data.init_args.cache_dir <folder> (the same in the config that fit reads)"
            )
        print(f"prepared cache: {datamodule.prepare_cache(config.cache_workers)}")
    datamodule.setup("fit")
    print(summary(datamodule))
    if config.splits_file:
        print(f"splits written to {datamodule.write_splits(config.splits_file)}")
    return 0


def summary(datamodule: MedicalDataModule) -> str:
    """Task, and per split: samples, patients and samples per class (the label-fraction subset for train)."""
    task = datamodule.task
    if task is None:
        return (f"{datamodule.name}: {len(datamodule.sources()['train'])} unlabelled training images (no "
                "task, no validation or test split: for self-supervised pretraining)")
    lines = [f"{datamodule.name}: {task.kind} task, classes {list(task.class_names)}, "
             f"primary metric {task.primary_metric}"]
    for split in SPLITS:
        source = datamodule.sources()[split]
        labels = np.asarray(source.labels)
        counts = labels.sum(axis=0) if labels.ndim == 2 else np.bincount(labels, minlength=task.num_classes)
        patients = "" if source.groups is None else f", {len(set(source.groups.tolist()))} patients"
        per_class = ", ".join(f"{name}={int(n)}" for name, n in zip(task.class_names, counts, strict=True))
        lines.append(f"  {split:<5} {len(source):>7} samples{patients}; {per_class}")
    kept = len(datamodule.train_indices())
    if kept < len(datamodule.sources()["train"]):
        lines.append(f"  train_fraction={datamodule.train_fraction} "
                     f"(fraction_seed={datamodule.fraction_seed}) keeps {kept} training samples")
    return "\n".join(lines)
