"""The Lightning behaviour that ``medtransfer.runtime.lightning_compat`` relies on, pinned so that an upgrade
that changes it fails here; and a scan that no other module overrides or reads a private Lightning or
jsonargparse member."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import jsonargparse
import pytest
import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

import medtransfer
from medtransfer.runtime import lightning_compat

REPO = Path(__file__).resolve().parents[2]
COMPAT = "medtransfer/runtime/lightning_compat.py"
UPSTREAM = ("pytorch_lightning", "lightning", "lightning_fabric", "jsonargparse")


class Width(pl.LightningModule):
    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()


def test_a_module_marked_as_traced_answers_trainer_outside_a_trainer():
    """``lightning_compat.lightning_tracing``: without a Trainer, ``trainer`` raises, unless the module is
    marked as being traced (which ``medtransfer export`` relies on when it traces a trained module)."""
    from medtransfer.runtime.lightning_compat import lightning_tracing

    module = Width()
    with pytest.raises(RuntimeError):
        _ = module.trainer
    with lightning_tracing(module):
        assert module.trainer is None
    with pytest.raises(RuntimeError):
        _ = module.trainer


def lightning_private_names() -> set[str]:
    """Private (one leading underscore) attribute and method names of the Lightning and jsonargparse
    objects medtransfer works with."""
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    objects = [trainer, trainer.fit_loop, trainer.strategy, pl.LightningModule(), pl.LightningDataModule(),
               ModelCheckpoint(), LearningRateMonitor(), jsonargparse.ArgumentParser(),
               jsonargparse.Namespace(), LightningCLI, LightningArgumentParser]
    names = set()
    for obj in objects:
        names |= {n for n in set(dir(obj)) | set(getattr(obj, "__dict__", {})) if n.startswith("_")}
    return {n for n in names if not n.startswith("__")}


ABC_BOOKKEEPING = {"_abc_impl"}  # what ABCMeta itself puts in every subclass of an abstract base class


def overridden_private_members() -> set[tuple[str, str]]:
    """(file, name) of each private member of a Lightning/jsonargparse base class that a medtransfer class
    defines again."""
    found = set()
    for info in pkgutil.walk_packages(medtransfer.__path__, "medtransfer."):
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            bases = [b for b in cls.__mro__[1:] if b.__module__.split(".")[0] in UPSTREAM]
            for name in vars(cls):
                private = name.startswith("_") and not name.startswith("__") and name not in ABC_BOOKKEEPING
                if private and any(hasattr(b, name) for b in bases):
                    found.add((Path(inspect.getfile(cls)).relative_to(REPO).as_posix(), name))
    return found


def read_private_members(private: set[str]) -> set[tuple[str, str]]:
    """(file, name) of each attribute access (or getattr/hasattr string) of a name in ``private`` that the
    file does not define itself (as a method, or by assigning ``self.<name>``)."""
    found = set()
    for path in sorted((REPO / "medtransfer").rglob("*.py")):
        nodes = list(ast.walk(ast.parse(path.read_text())))
        defined = {n.name for n in nodes if isinstance(n, ast.FunctionDef)}
        targets = [t for n in nodes if isinstance(n, (ast.Assign, ast.AnnAssign))
                   for t in (n.targets if isinstance(n, ast.Assign) else [n.target])]
        defined |= {t.attr for t in targets
                    if isinstance(t, ast.Attribute) and ast.unparse(t.value) == "self"}
        for node in nodes:
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value
            else:
                continue
            if name in private and name not in defined:
                found.add((path.relative_to(REPO).as_posix(), name))
    return found


def test_no_private_lightning_or_jsonargparse_member_is_used_outside_lightning_compat():
    used = overridden_private_members() | read_private_members(lightning_private_names())
    outside = {(path, name) for path, name in used if path != COMPAT}
    assert not outside, (
        f"private Lightning/jsonargparse members used outside {COMPAT}: {sorted(outside)}; use a "
        "public hook or argument, or isolate the use in lightning_compat with a test here")


@pytest.mark.parametrize(("strategy", "multiprocessing"), [
    ("ddp_spawn", True), ("ddp_fork", True), ("ddp_notebook", True),
    ("ddp_spawn_find_unused_parameters_true", True),
    ("ddp", False), ("ddp_find_unused_parameters_true", False), ("auto", False),
])
def test_strategies_that_start_ranks_by_multiprocessing_are_told_apart(strategy, multiprocessing):
    # by the config's name (before anything is built) and by the built Trainer's launcher alike
    trainer = pl.Trainer(accelerator="cpu", devices=1, strategy=strategy, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    assert lightning_compat.starts_ranks_by_multiprocessing(trainer) is multiprocessing
    assert lightning_compat.multiprocessing_strategy(strategy) is multiprocessing


@pytest.mark.parametrize(("init_args", "multiprocessing"), [
    ({"start_method": "spawn"}, True), ({"start_method": "popen"}, False), ({}, False), (None, False),
])
def test_a_strategy_class_path_is_told_apart_by_its_start_method(init_args, multiprocessing):
    strategy = {"class_path": "pytorch_lightning.strategies.DDPStrategy", "init_args": init_args}
    assert lightning_compat.multiprocessing_strategy(strategy) is multiprocessing
