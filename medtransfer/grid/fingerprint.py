"""Run fingerprints: the identity of a run is its resolved config, minus where and on what hardware it ran.

The same function reads a planned run's parsed config and the ``config`` a finished run stored in its
results.json, so a finished run is recognised (and skipped) whoever started it, and a results.json can be
matched to the run of a grid it belongs to.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import json
import re
from pathlib import PurePath
from typing import Any

from ..utils.hashing import json_digest

# where a run writes and which hardware it uses: not part of what it measures
EXECUTION_KEYS = (
    "config",
    "trainer.logger",
    "trainer.default_root_dir",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.accelerator",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "data.init_args.num_workers",
    "data.init_args.eval_batch_size",
    "data.init_args.pin_memory",
    "data.init_args.persistent_workers",
    "data.init_args.prefetch_factor",
    # a prepared cache is a faster route to the images (results.json's data fingerprint records its use)
    "data.init_args.cache_dir",
    "data.init_args.cache_size",
)
# how results.json's statistics of the tested model are computed: its confidence intervals (``--intervals.*``)
# and the rule of its decision thresholds (``--decision_rule``). Not what the run trains or measures, and
# absent from results written before they existed
STATISTICS_KEYS = ("intervals", "decision_rule")
# which explanation pictures a run draws (``--explain``): not what it measures, absent from older results
PICTURE_KEYS = ("explain",)
# where frozen-backbone models keep their feature stores (shared across the grid, so never part of a run's
# identity)
STORE_ROOT_KEYS = ("model.init_args.features_dir",)
# the seeds a grid's seed axis sets: repeats of one cell differ in these alone
SEED_KEYS = ("seed_everything", "data.init_args.fraction_seed")
PROGRESS_BARS = ("TQDMProgressBar", "RichProgressBar", "EpochLines")
BACKBONE_FIELDS = ("checkpoint", "backbone_kwargs", "embedding", "resize_to")
# model arguments added after studies finished, whose null default computes what runs before them computed
# (Finetune's stem, normalisation and multistep milestones; the frozen heads' and DVME's memory_format): left
# out while null, so those runs are recognised
LATER_MODEL_ARGUMENTS = tuple(f"model.init_args.{name}"
                              for name in ("stem", "normalisation", "milestones", "memory_format"))


def plain(config: Any) -> Any:
    """The config as JSON data (paths and other objects as strings), as results.json stores it."""
    return json.loads(json.dumps(config, default=str))


def without(config: dict, keys: tuple[str, ...]) -> dict:
    config = copy.deepcopy(config)
    for dotted in keys:
        node = config
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return config


def run_fingerprint(config: dict, verb: str = "fit") -> str:
    """16 hex digits identifying what a run computes: its verb and resolved config."""
    ignored = EXECUTION_KEYS + STATISTICS_KEYS + PICTURE_KEYS + STORE_ROOT_KEYS
    return json_digest({"verb": verb, "config": without(identity(config), ignored)})


def group_fingerprint(config: dict, verb: str = "fit") -> str:
    """The fingerprint without the seeds: runs sharing it are repeats that a table cell averages."""
    ignored = EXECUTION_KEYS + STATISTICS_KEYS + PICTURE_KEYS + STORE_ROOT_KEYS + SEED_KEYS
    return json_digest({"verb": verb, "config": without(identity(config), ignored)})


def identity(config: dict) -> dict:
    """``plain(config)`` as configs were before the CLI showed its default callbacks (``trainer.callbacks``
    was null), dropped LightningCLI's ``optimizer``/``lr_scheduler`` (always null) and took the later model
    arguments (``LATER_MODEL_ARGUMENTS``): runs finished before keep their fingerprints."""
    config = plain(config)
    for key in ("optimizer", "lr_scheduler"):
        config.setdefault(key, None)
    if continues_itself(config.get("ckpt_path")):
        config["ckpt_path"] = None
    trainer = config.get("trainer")
    if isinstance(trainer, dict) and isinstance(trainer.get("callbacks"), list):
        trainer["callbacks"] = [c for c in trainer["callbacks"] if not is_progress_bar(c)]  # how it shows
    if isinstance(trainer, dict) and is_default_callbacks(trainer.get("callbacks")):
        trainer["callbacks"] = None
    return without(config, tuple(key for key in LATER_MODEL_ARGUMENTS if lookup(config, key) is None))


def lookup(config: dict, dotted: str) -> Any:
    """The value at a dotted key, None where any part is missing."""
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def continues_itself(ckpt_path: Any) -> bool:
    """Whether ``ckpt_path`` continues a run from its own ``last.ckpt`` (``--ckpt_path last``, as the SLURM
    tasks pass it, resolved or not): such a run computes what an uninterrupted one computes
    (docs/reliability.md), so it keeps the fingerprint of one started without ``ckpt_path``."""
    return isinstance(ckpt_path, str) and (
        ckpt_path == "last" or re.fullmatch(r"last(-v\d+)?\.ckpt", PurePath(ckpt_path).name) is not None)


def is_progress_bar(callback: Any) -> bool:
    """A progress bar in a resolved ``trainer.callbacks`` (earlier versions recorded the one the command
    chose): how a run shows its progress, not what it computes."""
    class_path = callback.get("class_path", "") if isinstance(callback, dict) else ""
    return class_path.rsplit(".", 1)[-1] in PROGRESS_BARS


def is_default_callbacks(callbacks: Any) -> bool:
    """Whether a resolved ``trainer.callbacks`` is ``medtransfer.run.config.default_callbacks()`` with every
    argument at its default; an argument a callback took later (``TaskCheckpoint``'s ``monitor``) is at its
    default where an older config lacks it."""
    defaults = resolved_default_callbacks()
    if not isinstance(callbacks, list) or not all(isinstance(c, dict) for c in callbacks):
        return False
    if len(callbacks) != len(defaults):
        return False
    given = [{"class_path": c.get("class_path"), "init_args": d["init_args"] | (c.get("init_args") or {})}
             for c, d in zip(callbacks, defaults, strict=True)]
    return plain(given) == defaults


@functools.cache
def resolved_default_callbacks() -> list[dict]:
    """``default_callbacks()`` with every constructor argument filled in, as a config resolves them (worked
    out once: every fingerprint of a grid compares against it)."""
    from ..run.config import default_callbacks

    resolved = []
    for default in default_callbacks():
        module, _, name = default["class_path"].rpartition(".")
        parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters.values()
        arguments = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
        init_args = {**arguments, **default["init_args"]}
        resolved.append({"class_path": default["class_path"], "init_args": init_args})
    return plain(resolved)


def store_keys(config: dict) -> list[str]:
    """One key per feature store family a frozen-backbone run reads: (data at any label fraction, backbone).
    A linear probe and a frozen DVME over the same backbone and data share the key."""
    config = plain(config)
    data = without(
        config.get("data") or {},
        (
            "init_args.train_fraction",
            "init_args.fraction_seed",
            "init_args.batch_size",
            "init_args.eval_batch_size",
            "init_args.num_workers",
        ),
    )
    args = (config.get("model") or {}).get("init_args") or {}
    entries = args.get("backbones") or [
        {"name": args.get("backbone"), **{k: args.get(k) for k in BACKBONE_FIELDS}}
    ]
    keys = []
    for entry in entries:
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        backbone = {k: entry.get(k) for k in ("name", *BACKBONE_FIELDS)}
        keys.append(json_digest({"data": data, "backbone": backbone}))
    return keys


def store_root_key(config: dict) -> str | None:
    """The dotted key of the model's feature-store folder argument, when the model uses feature stores
    (``FrozenBackboneModule`` with ``feature_cache`` on; DVME only in its ``frozen`` mode)."""
    args = ((config.get("model") or {}).get("init_args")) or {}
    if not args.get("feature_cache", True) or args.get("mode", "frozen") != "frozen":
        return None
    for key in STORE_ROOT_KEYS:
        if key.rsplit(".", 1)[-1] in args:
            return key
    return None
