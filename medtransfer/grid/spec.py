"""The grid spec: a YAML file naming base config pieces, overrides for every run, and the axes to cross.

Every problem is reported with the grid file and the key that holds it, before any run starts; a key given
twice in one mapping (which YAML would resolve by silently keeping the last) is a ``DuplicateKeyError``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ..errors import MedTransferError
from ..utils.yaml_files import load_yaml_file, syntax_error_line
from .fingerprint import SEED_KEYS

# axes with a meaning of their own; any other axis is a dotted override key (e.g. ``model.init_args.lr``)
CONFIG_AXES = ("dataset", "protocol")
NAMED_AXES = ("dataset", "protocol", "backbone", "fraction", "seed")
BACKBONE_KEY = "model.init_args.backbone"
BACKBONES_KEY = "model.init_args.backbones"  # DVME: a list of backbones
FRACTION_KEY = "data.init_args.train_fraction"
CHECKPOINT_KEY = "model.init_args.checkpoint"
LEVEL_KEYS = {"value", "config", "overrides", "verb", "pretrain", "fuse"}
PRETRAIN_KEYS = {"config", "overrides", "share", "checkpoint_key"}
VERBS = ("fit", "test", "validate")
TOP_KEYS = {
    "name",
    "output_dir",
    "configs",
    "overrides",
    "axes",
    "grids",
    "exclude",
    "report",
    "local",
    "slurm",
    "checkpoints",
}


class GridSpecError(MedTransferError, ValueError):
    """A grid file that cannot be expanded; the message names the file and the key."""


@dataclass(frozen=True)
class Pretrain:
    """A pretraining stage that a level's runs need (e.g. SSL on the run's dataset): a run of its own, made
    of the grid's configs and overrides, the levels of the ``share`` axes of the run that needs it, its own
    config pieces, the level's backbone and its own overrides; it must write a backbone export
    (``model.init_args.export``), whose path the level's runs receive as ``checkpoint_key``."""

    configs: tuple[str, ...]
    overrides: tuple[tuple[str, Any], ...] = ()
    share: tuple[str, ...] = ("dataset",)
    checkpoint_key: str = CHECKPOINT_KEY


@dataclass(frozen=True)
class Level:
    """One value of an axis: its label in tables, and the config pieces and overrides it adds to a run."""

    axis: str
    label: str
    value: Any
    configs: tuple[str, ...] = ()
    overrides: tuple[tuple[str, Any], ...] = ()
    verb: str | None = None  # e.g. ``test`` for kNN, which has nothing to fit
    pretrain: Pretrain | None = None  # a pretraining run to finish first, whose backbone the runs load
    # a DVME level that fuses other backbone levels of the grid (``fuse: [simclr, byol]``): their labels, and
    # the levels themselves once the grid is read; the runs get ``model.init_args.backbones`` with each
    # level's backbone and, for a level with ``pretrain``, its export as that entry's checkpoint
    fuse: tuple[str, ...] = ()
    fused: tuple[Level, ...] = ()


@dataclass(frozen=True)
class Axis:
    name: str
    levels: tuple[Level, ...]


@dataclass(frozen=True)
class LocalSettings:
    """``parallel`` runs at once; with ``devices`` (GPU ids) each run gets ``devices_per_run`` of them."""

    parallel: int = 1
    devices: tuple[int, ...] = ()
    devices_per_run: int = 1


@dataclass(frozen=True)
class CheckpointSettings:
    """``keep_last``: keep a finished run's ``last.ckpt``, kept only to continue it (``retention``)."""

    keep_last: bool = False


@dataclass(frozen=True)
class SlurmSettings:
    """One array task per run; ``gpus_per_node`` x ``nodes`` processes per task run DDP through srun."""

    partition: str | None = None
    account: str | None = None
    time: str = "24:00:00"
    nodes: int = 1
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem: str | None = "64G"
    max_parallel: int | None = None
    setup: tuple[str, ...] = ()
    sbatch_options: tuple[str, ...] = ()
    # seconds before the time limit at which SLURM signals a task to save and requeue (docs/reliability.md);
    # null: no requeue
    requeue_signal_s: int | None = 600


@dataclass(frozen=True)
class ReportSettings:
    baseline: str | None = None  # backbone label the gains are measured against
    metric: str | None = None  # default: each dataset's primary metric
    split: str = "test"


@dataclass
class GridSpec:
    name: str
    path: Path
    output_dir: Path
    configs: tuple[str, ...]
    overrides: tuple[tuple[str, Any], ...]
    blocks: list[list[Axis]]  # the grid is the union of the products of each block's axes
    exclude: list[dict[str, str]] = field(default_factory=list)
    report: ReportSettings = field(default_factory=ReportSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    checkpoints: CheckpointSettings = field(default_factory=CheckpointSettings)

    def axis_names(self) -> list[str]:
        """All axes, in the order run ids and tables use (named axes first, seed last)."""
        names: list[str] = []
        for block in self.blocks:
            names += [a.name for a in block if a.name not in names]
        return sort_axes(names)


def sort_axes(names: list[str]) -> list[str]:
    head = [n for n in NAMED_AXES[:4] if n in names]
    others = [n for n in names if n not in NAMED_AXES]
    return head + others + (["seed"] if "seed" in names else [])


def load_grid(path: str | Path, cwd: str | Path | None = None) -> GridSpec:
    """Read and check a grid file; relative config pieces resolve against ``cwd``, then its folder."""
    path = Path(path)
    cwd = Path(cwd or Path.cwd())
    if not path.is_file():
        raise GridSpecError(
            f"grid file {path} does not exist (examples: configs/benchmark/smoke.yaml, paper.yaml)"
        )
    try:
        raw = load_yaml_file(path)
    except yaml.YAMLError as err:
        raise GridSpecError(f"grid file {path} is not valid YAML: {syntax_error_line(err)}") from None
    where = _Where(path, cwd)
    if not isinstance(raw, dict):
        raise GridSpecError(f"{path}: expected a mapping with keys name, configs, overrides, axes")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise GridSpecError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    name = str(raw.get("name") or path.stem)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise GridSpecError(f"{path}: name {name!r} may only hold letters, digits, '_', '.', '-'")
    shared = _axes(raw.get("axes") or {}, "axes", where)
    grids = raw.get("grids") or [{}]
    if not isinstance(grids, list):
        raise GridSpecError(f"{path}: grids must be a list of axis mappings (one sub-grid each)")
    blocks = []
    for i, grid in enumerate(grids):
        own = _axes(grid, f"grids[{i}]", where)
        clash = {a.name for a in own} & {a.name for a in shared}
        if clash:
            raise GridSpecError(f"{path}: grids[{i}] repeats axis {sorted(clash)} already given under axes")
        blocks.append(shared + own)
    blocks = _link_fusions(blocks, len(shared), where)
    spec = GridSpec(
        name=name,
        path=path.resolve(),
        output_dir=(cwd / str(raw.get("output_dir") or f"runs/benchmark/{name}")).resolve(),
        configs=tuple(where.config_pieces(raw.get("configs") or [], "configs")),
        overrides=_overrides(raw.get("overrides") or {}, "overrides", where),
        blocks=blocks,
        exclude=_exclude(raw.get("exclude") or [], where),
        report=_settings(ReportSettings, raw.get("report"), "report", where),
        local=_settings(LocalSettings, raw.get("local"), "local", where),
        slurm=_settings(SlurmSettings, raw.get("slurm"), "slurm", where),
        checkpoints=_settings(CheckpointSettings, raw.get("checkpoints"), "checkpoints", where),
    )
    if not isinstance(spec.checkpoints.keep_last, bool):
        keep_last = spec.checkpoints.keep_last
        raise where.error("checkpoints.keep_last", f"expected true or false, got {keep_last!r}")
    if spec.local.parallel < 1 or spec.local.devices_per_run < 1:
        raise GridSpecError(f"{path}: local.parallel and local.devices_per_run must be at least 1")
    return spec


class _Where:
    """Error context (the grid file) and config-piece resolution."""

    def __init__(self, path: Path, cwd: Path) -> None:
        self.path = path
        self.cwd = cwd

    def error(self, key: str, message: str) -> GridSpecError:
        return GridSpecError(f"{self.path}: {key}: {message}")

    def config_pieces(self, value: Any, key: str) -> list[str]:
        pieces = [value] if isinstance(value, str) else value
        if not isinstance(pieces, list) or not all(isinstance(p, str) for p in pieces):
            raise self.error(key, f"expected a config file path or a list of them, got {value!r}")
        resolved = []
        for piece in pieces:
            candidates = (
                [Path(piece)] if Path(piece).is_absolute() else [self.cwd / piece, self.path.parent / piece]
            )
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise self.error(
                    key, f"config piece {piece} does not exist (looked in {self.cwd} and {self.path.parent})"
                )
            resolved.append(str(found.resolve()))
        return resolved


def _axes(raw: Any, key: str, where: _Where) -> list[Axis]:
    if not isinstance(raw, dict):
        raise where.error(key, "expected a mapping of axis name to its values")
    axes = []
    for name, values in raw.items():
        name = str(name)
        if name not in NAMED_AXES and "." not in name:
            raise where.error(
                f"{key}.{name}",
                f"unknown axis; use one of {list(NAMED_AXES)} or a dotted override "
                "key such as model.init_args.lr",
            )
        if isinstance(values, dict):
            items = [(str(label), v) for label, v in values.items()]
        elif isinstance(values, list):
            items = [(_label_of(v), v) for v in values]
        else:
            raise where.error(f"{key}.{name}", "expected a list of values or a mapping of label to value")
        if not items:
            raise where.error(f"{key}.{name}", "an axis needs at least one value")
        labels = [label for label, _ in items]
        if len(set(labels)) != len(labels):
            raise where.error(f"{key}.{name}", f"labels repeat: {labels}")
        axes.append(
            Axis(name, tuple(_level(name, label, v, f"{key}.{name}.{label}", where) for label, v in items))
        )
    return axes


def _label_of(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(str(v) for v in value)
    return str(value)


def _level(axis: str, label: str, raw: Any, key: str, where: _Where) -> Level:
    """A level from its value, or from ``{value, config, overrides, verb, pretrain, fuse}``."""
    verb, pretrain, fuse = None, None, ()
    if isinstance(raw, dict) and raw and set(raw) <= LEVEL_KEYS:
        value = raw.get("value")
        if "fuse" in raw:
            fuse = _fuse(axis, raw, f"{key}.fuse", where)
        configs = where.config_pieces(raw.get("config") or [], f"{key}.config")
        overrides = list(_overrides(raw.get("overrides") or {}, f"{key}.overrides", where))
        verb = raw.get("verb")
        if verb is not None and verb not in VERBS:
            raise where.error(f"{key}.verb", f"expected one of {list(VERBS)}, got {verb!r}")
        if raw.get("pretrain") is not None:
            pretrain = _pretrain(axis, value, raw["pretrain"], f"{key}.pretrain", where)
    else:
        value, configs, overrides = raw, [], []
    if axis in CONFIG_AXES:
        if value is not None:
            configs = where.config_pieces(value, key) + configs
    elif value is not None:
        overrides = _axis_overrides(axis, value, key, where) + overrides
    if not configs and not overrides and not fuse:
        raise where.error(key, "this level changes nothing (give a value, config pieces or overrides)")
    return Level(axis, label, value, tuple(configs), tuple(overrides), verb, pretrain, fuse)


def _fuse(axis: str, raw: dict, key: str, where: _Where) -> tuple[str, ...]:
    """``fuse: [label, ...]`` of a backbone level: the other backbone levels whose backbones DVME fuses."""
    names = raw["fuse"]
    if axis != "backbone":
        raise where.error(key, "only a backbone level can fuse other backbone levels")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise where.error(key, f"expected a list of the grid's backbone labels, got {names!r}")
    if len(set(names)) != len(names):
        raise where.error(key, f"labels repeat: {names}")
    if raw.get("value") is not None or raw.get("pretrain") is not None:
        raise where.error(key, "a fusing level takes its backbones from the levels it names: give no value "
                               "or pretrain beside fuse")
    return tuple(names)


def _link_fusions(blocks: list[list[Axis]], shared: int, where: _Where) -> list[list[Axis]]:
    """Resolve every ``fuse`` level's labels to the backbone levels they name (in any sub-grid): each must
    set one backbone name and nothing else a fusion could not carry (its ``pretrain`` is carried)."""
    known: dict[str, Level] = {}
    for block in blocks:
        for level in (lv for axis in block if axis.name == "backbone" for lv in axis.levels):
            if not level.fuse:
                known.setdefault(level.label, level)
    linked = []
    for i, block in enumerate(blocks):
        axes = []
        for j, axis in enumerate(block):
            where_key = "axes" if j < shared else f"grids[{i}]"
            levels = tuple(_linked(level, known, blocks, f"{where_key}.{axis.name}.{level.label}.fuse", where)
                           if level.fuse else level for level in axis.levels)
            axes.append(Axis(axis.name, levels))
        linked.append(axes)
    return linked


def _linked(level: Level, known: dict[str, Level], blocks: list[list[Axis]], key: str,
            where: _Where) -> Level:
    """``level`` with the levels its ``fuse`` names and their backbones as ``model.init_args.backbones``."""
    members = []
    for name in level.fuse:
        if name not in known:
            raise where.error(key, f"unknown backbone level {name!r}; known: {sorted(known)}")
        member = known[name]
        if any(lv.label == name and not lv.fuse and (lv.value, lv.overrides, lv.pretrain)
               != (member.value, member.overrides, member.pretrain)
               for block in blocks for axis in block if axis.name == "backbone" for lv in axis.levels):
            raise where.error(key, f"backbone level {name!r} is defined differently in two sub-grids; "
                                   "give them different labels")
        if not isinstance(member.value, str) or member.configs or member.overrides != ((BACKBONE_KEY,
                                                                                        member.value),):
            raise where.error(key, f"backbone level {name!r} must be one backbone name (with pretrain or "
                                   "not) and nothing else to be fused")
        members.append(member)
    backbones = [{"name": member.value} for member in members]
    return replace(level, overrides=((BACKBONES_KEY, backbones), *level.overrides), fused=tuple(members))


def _pretrain(axis: str, value: Any, raw: Any, key: str, where: _Where) -> Pretrain:
    """``pretrain: {config, overrides, share, checkpoint_key}`` of a level."""
    if not isinstance(raw, dict) or not set(raw) <= PRETRAIN_KEYS or not raw.get("config"):
        raise where.error(key, f"expected a mapping with config (the pretraining's config pieces) and "
                               f"optionally {sorted(PRETRAIN_KEYS - {'config'})}, got {raw!r}")
    if axis == "backbone" and not isinstance(value, str):
        raise where.error(key, f"pretraining trains one backbone: the level's value must be one backbone "
                               f"name, got {value!r}")
    share = raw.get("share", ["dataset"])
    share = [share] if isinstance(share, str) else share
    if not isinstance(share, list) or not all(isinstance(a, str) for a in share) or axis in share:
        raise where.error(f"{key}.share", "expected a list of the other axes whose levels the pretraining "
                                          f"shares with the runs needing it (e.g. [dataset]), got {share!r}")
    checkpoint_key = raw.get("checkpoint_key", CHECKPOINT_KEY)
    if not isinstance(checkpoint_key, str) or "." not in checkpoint_key:
        raise where.error(f"{key}.checkpoint_key", f"expected a dotted key, got {checkpoint_key!r}")
    overrides = _overrides(raw.get("overrides") or {}, f"{key}.overrides", where)
    if axis == "backbone":  # the pretraining trains the backbone the runs load
        overrides = ((BACKBONE_KEY, value), *overrides)
    return Pretrain(tuple(where.config_pieces(raw["config"], f"{key}.config")), overrides, tuple(share),
                    checkpoint_key)


def _axis_overrides(axis: str, value: Any, key: str, where: _Where) -> list[tuple[str, Any]]:
    if axis == "backbone":
        if isinstance(value, str):
            return [(BACKBONE_KEY, value)]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return [(BACKBONES_KEY, value)]
        raise where.error(key, f"a backbone is a name or a list of names (DVME), got {value!r}")
    if axis == "fraction":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise where.error(key, f"a label fraction is a number in (0, 1] or a sample count, got {value!r}")
        return [(FRACTION_KEY, value)]
    if axis == "seed":
        if isinstance(value, bool) or not isinstance(value, int):
            raise where.error(key, f"a seed is an integer, got {value!r}")
        return [(k, value) for k in SEED_KEYS]
    return [(axis, value)]


def _overrides(raw: Any, key: str, where: _Where) -> tuple[tuple[str, Any], ...]:
    if not isinstance(raw, dict):
        raise where.error(key, "expected a mapping of dotted keys to values, e.g. {trainer.max_epochs: 10}")
    return tuple((str(k), v) for k, v in raw.items())


def _exclude(raw: Any, where: _Where) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise where.error("exclude", "expected a list of {axis: label} mappings")
    return [{str(k): str(v) for k, v in rule.items()} for rule in raw]


def _settings(cls, raw: Any, key: str, where: _Where):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise where.error(key, "expected a mapping")
    allowed = set(cls.__dataclass_fields__)
    unknown = set(raw) - allowed
    if unknown:
        raise where.error(key, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return cls(**values)


def format_override(key: str, value: Any) -> str:
    """``--key=value`` as LightningCLI reads it (strings as they are, anything else as JSON, i.e. YAML)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return f"--{key}={text}"
