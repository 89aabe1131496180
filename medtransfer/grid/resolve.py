"""Checking every run's config with the real ``medtransfer fit`` parser (nothing instantiated, nothing
trained) and fingerprinting the resolved configs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..backbones import UnknownBackboneError, check_backbone_name
from ..errors import ConfigValueError, MedTransferError
from ..run.config import build_parser
from ..run.parse_errors import config_reason
from ..run.trainer_values import check_trainer_values
from .fingerprint import group_fingerprint, run_fingerprint, store_keys, store_root_key
from .plan import Run

# jsonargparse's message for a config that lacks data or model so far (not an error while probing part of a
# run)
INCOMPLETE = "the following arguments are required"


class InvalidRunError(MedTransferError, ValueError):
    """A run whose config LightningCLI rejects; the message names the axis value or override responsible."""


def check_fixed_seed(seed) -> None:
    """A grid's run repeats: redone after a failure, continued after a kill, compared across backbones on the
    same seed. ``seed_everything: true`` would draw another seed each time."""
    if seed is True:
        raise ConfigValueError("seed_everything=true: each attempt of a grid's run would draw another seed, "
                               "so a run redone or continued would not repeat and backbones would not share "
                               "seeds; give numbers (the grid's seed axis, e.g. seed: [0, 1, 2])")


class ConfigResolver:
    """Parses argument lists (a verb, then its arguments) into resolved config dicts with the parser of
    ``medtransfer <verb>`` (``medtransfer.run.config``), and checks the trainer's values as a run would."""

    def __init__(self) -> None:
        self._parsers: dict[str, object] = {}
        self._parsed: dict[tuple[str, ...], dict] = {}  # config files are read once per resolver
        self._known_backbones: set[str] = set()

    def parse(self, args: list[str]) -> dict:
        """The resolved config of ``args`` (a verb, then its arguments)."""
        key = tuple(args)
        if key not in self._parsed:
            verb = args[0]
            if verb not in self._parsers:
                self._parsers[verb] = build_parser(verb)
            config = self._parsers[verb].parse_args(args[1:])
            check_trainer_values(config.trainer, verb)
            check_fixed_seed(config.get("seed_everything"))
            self._parsed[key] = config.as_dict()
        return copy.deepcopy(self._parsed[key])

    def known_keys(self, verb: str) -> list[str]:
        """Every option's dotted key of ``verb``'s parser (for "did you mean" suggestions)."""
        if verb not in self._parsers:
            self._parsers[verb] = build_parser(verb)
        return list(self._parsers[verb].get_defaults().keys())

    def check_backbones(self, run_id: str, config: dict) -> None:
        """Refuse a backbone name that no run could build (``backbones.check_backbone_name``): the parser
        takes any string, and each run with it would fail as it started. Each name is looked up once."""
        init_args = (config.get("model") or {}).get("init_args") or {}
        entries = [("backbone", init_args.get("backbone"))]
        entries += [(f"backbones[{i}]", b.get("name") if isinstance(b, dict) else b)
                    for i, b in enumerate(init_args.get("backbones") or [])]
        for key, name in entries:
            if not isinstance(name, str) or name in self._known_backbones:
                continue
            try:
                check_backbone_name(name)
            except UnknownBackboneError as err:
                raise InvalidRunError(f"run {run_id}: model.init_args.{key}: {err}") from None
            self._known_backbones.add(name)

    def check(self, args: list[str]) -> str | None:
        """None when ``args`` parse, else the parser's message."""
        try:
            self.parse(args)
        except Exception as err:  # jsonargparse raises ArgumentError and, inside it, assorted errors
            return str(err)
        return None


def resolve(
    runs: list[Run],
    store_dir: Path,
    resolver: ConfigResolver | None = None,
    launcher_overrides: Callable[[Run], list[tuple[str, Any]]] | None = None,
) -> None:
    """Parse every run (fills ``config``, ``fingerprint``, ``group``, ``store_keys``); frozen-backbone runs
    get the grid's shared feature-store folder. ``launcher_overrides`` (e.g. the log folder) are checked too.
    Raises ``InvalidRunError`` naming the first bad axis value."""
    resolver = resolver or ConfigResolver()
    for run in runs:
        extra = launcher_overrides(run) if launcher_overrides else []
        try:
            config = resolver.parse(run.fit_args(extra=extra))
        except Exception as err:
            raise InvalidRunError(_blame(run, resolver, str(err), extra)) from None
        resolver.check_backbones(run.id, config)
        key = store_root_key(config)
        if key is not None and not any(k == key for k, _ in run.overrides):
            run.overrides.append((key, str(store_dir)))
            _set(config, key, str(store_dir))
        run.config = config
        run.fingerprint = run_fingerprint(config, run.verb)
        run.group = group_fingerprint(config, run.verb)
        run.store_keys = tuple(store_keys(config)) if key is not None else ()


def _blame(run: Run, resolver: ConfigResolver, message: str, extra: list[tuple[str, Any]]) -> str:
    """Add the run's parts one at a time, in the order of its command line (config pieces: the grid's, then
    each axis level's; overrides: the grid's, then each axis level's, then the launcher's) until parsing
    fails; that part is the culprit."""
    level_configs = [c for lv in run.levels for c in lv.configs]
    level_overrides = [o for lv in run.levels for o in lv.overrides]
    parts: list[tuple[str, list[str], list[tuple[str, Any]]]] = [
        (f"the grid's config piece {c}", [c], []) for c in run.configs if c not in level_configs
    ]
    parts += [(_level_name(lv), list(lv.configs), []) for lv in run.levels if lv.configs]
    parts.append(("the grid's overrides", [], [o for o in run.overrides if o not in level_overrides]))
    parts += [(_level_name(lv), [], list(lv.overrides)) for lv in run.levels if lv.overrides]
    parts.append(("the launcher's overrides (" + ", ".join(k for k, _ in extra) + ")", [], list(extra)))
    configs: list[str] = []
    overrides: list[tuple[str, Any]] = []
    culprit = "the combination of its axis values"
    for what, more_configs, more_overrides in parts:
        configs += more_configs
        overrides += more_overrides
        probe = Run(run.id, [], configs, overrides, verb=run.verb)
        error = resolver.check(probe.fit_args())
        if error is not None and not error.startswith(INCOMPLETE):
            culprit, message = what, error
            break
    reason = config_reason(message, resolver.known_keys(run.verb))
    return f"run {run.id}: {culprit} is not a valid `medtransfer {run.verb}` config: {reason}"


def _level_name(level) -> str:
    return f"axis {level.axis} = {level.label!r} ({_describe(level)})"


def _describe(level) -> str:
    items = [f"--config {c}" for c in level.configs] + [f"{k}={v!r}" for k, v in level.overrides]
    return ", ".join(items)


def _set(config: dict, dotted: str, value: Any) -> None:
    node = config
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
