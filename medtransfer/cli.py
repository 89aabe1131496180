"""The ``medtransfer`` command: LightningCLI verbs fit/validate/test/predict, plus the tool verbs."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

from . import __version__
from .callbacks import (
    LearningRates,
    PredictionWriter,
    TaskCheckpoint,
    TestPlots,
    TestPredictionWriter,
    TrainingImageGrid,
)
from .datamodules import MedicalDataModule
from .datamodules.unlabelled_predict import CHECKPOINT_MODEL_KEY
from .errors import first_line, user_error_message
from .explain import add_explanations
from .lightning_modules import MedTransferModule
from .lightning_modules.frozen import FrozenBackboneModule
from .outputs.results import build_results, write_json_atomic
from .run.inference import check_trained, prepare_for_new_images
from .runtime.checkpoints import VERSION_KEY, CheckpointFileError, read_checkpoint
from .runtime.ckpt_path import (
    fill_data_from_checkpoint,
    resolve_last_checkpoint,
    settings_unknown_to_model,
    with_checkpoint_model,
)
from .runtime.folder import checkpoint_directory, local_run_directory, logger_description, run_directory
from .runtime.lightning_compat import give_back_ckpt_path, hold_back_ckpt_path
from .runtime.lock import launching_rank, lock_run_folder, run_locks
from .runtime.logs import configure_logging
from .runtime.progress import choose_training_bar, process_rank
from .runtime.rank_exit import StopAllRanks, stopped_rank_message
from .runtime.requeue import Requeued, SlurmRequeue, requeued_job
from .runtime.threads import torch_threads
from .stats.intervals import test_intervals
from .task import Task, TaskMismatchError

log = logging.getLogger(__name__)

# verbs outside LightningCLI: name -> (module with main(argv), one-line help)
TOOL_VERBS: dict[str, tuple[str, str]] = {
    "extract": ("medtransfer.verbs.extract", "compute (or reuse) the feature stores of a frozen backbone"),
    "weights": ("medtransfer.verbs.weights", "list, check and download pretrained weights"),
    "benchmark": ("medtransfer.verbs.benchmark", "run a grid of experiments and report tables and plots"),
    "prepare": ("medtransfer.verbs.prepare", "check a dataset, report its splits, write them out"),
    "export": ("medtransfer.verbs.export", "write a trained model as ONNX or TorchScript, with its model card"),
}


class MedTransferCLI(LightningCLI):
    """LightningCLI with the task linked from data to model, default logging/checkpointing, results.json, and
    ``fit`` followed by a test of the best checkpoint."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.task", "model.init_args.task", apply_on="instantiate")
        parser.set_defaults({"trainer.callbacks": default_callbacks()})
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="fit: validate and test the best checkpoint when training ends")
        parser.add_argument("--intervals.resamples", type=int, default=1000,
                            help="test: bootstrap resamples of results.json's confidence intervals (0: none)")
        parser.add_argument("--intervals.confidence", type=float, default=0.95,
                            help="test: confidence level of those intervals")
        parser.add_argument("--intervals.seed", type=int, default=0,
                            help="test: seed of the bootstrap resamples")
        parser.add_argument("--allow_untrained", type=bool, default=False,
                            help="validate/test/predict: run a model with trainable weights without "
                                 "--ckpt_path")
        parser.add_argument("--explain", type=bool, nargs="?", const=True, default=False,
                            help="fit/test: explanation maps of the first test images of each class; "
                                 "predict: a map per image, in predictions.csv's explanation column "
                                 "(docs/explanations.md)")

    def parse_arguments(self, parser, args) -> None:
        """Parse, then read the checkpoint that ``--ckpt_path`` names (see ``_apply_checkpoint``)."""
        if args is None:  # the command line: completed in place, as LightningCLI reads it from sys.argv
            sys.argv[1:] = with_checkpoint_model(sys.argv[1:])
        super().parse_arguments(parser, args if args is None else with_checkpoint_model(args))
        self._checkpoint_task: tuple[Task, str] | None = None
        self._ckpt_path: str | None = None
        subcommand = self.config.get("subcommand")
        if subcommand:
            self._apply_checkpoint(subcommand)
            self._ckpt_path = hold_back_ckpt_path(self.config[subcommand])

    def before_instantiate_classes(self) -> None:
        self._started = time.perf_counter()
        if self.subcommand:
            give_back_ckpt_path(self.config[self.subcommand], self._ckpt_path)
            choose_training_bar(self.config[self.subcommand].trainer)

    def _apply_checkpoint(self, subcommand: str) -> None:
        """Resolve ``--ckpt_path last`` to the newest ``last.ckpt`` of this logger's runs (``fit`` then
        continues in that run's version directory), and apply the checkpoint's model hyperparameters, except
        the task, which always comes from the data and is checked against the checkpoint's once the classes
        exist."""
        config = self.config[subcommand]
        if config.get("ckpt_path") == "last":
            config.ckpt_path = resolve_last_checkpoint(config, continue_run=subcommand == "fit")
        elif subcommand == "fit" and config.get("ckpt_path") is None and requeued_job():
            sys.stderr.write("medtransfer: this SLURM job was requeued, but without --ckpt_path last "
                             "training starts over (see docs/reliability.md)\n")
        ckpt_path = config.get("ckpt_path")
        if ckpt_path in (None, "best", "hpc", "registry"):
            return
        if not Path(ckpt_path).is_file():
            self.parser.error(f"--ckpt_path: no checkpoint file at {ckpt_path!r} (give a .ckpt written by "
                              "`medtransfer fit`, e.g. runs/<name>/version_<n>/checkpoints/last.ckpt, or "
                              "`last`)")
        checkpoint = read_checkpoint(ckpt_path)
        hparams = dict(checkpoint.get("hyper_parameters", {}))
        hparams.pop("_instantiator", None)
        saved_task = hparams.pop("task", None)
        if saved_task is not None:
            self._checkpoint_task = (Task.from_dict(saved_task), str(ckpt_path))
        fill_data_from_checkpoint(config, checkpoint, str(ckpt_path))
        if not hparams:
            return
        class_path = hparams.pop("_class_path", None) or checkpoint.get(CHECKPOINT_MODEL_KEY)
        written_by = checkpoint.get(VERSION_KEY, "a medtransfer version that did not record itself")
        if unknown := settings_unknown_to_model(class_path, hparams):
            raise CheckpointFileError(
                f"{ckpt_path} holds model settings this medtransfer ({__version__}) does not know: "
                f"{unknown}; the checkpoint was written by {written_by}. Use it with that version"
            )
        if class_path is not None:
            hparams = {"class_path": class_path, "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except (SystemExit, ValueError, TypeError) as error:
            raise CheckpointFileError(
                f"the model settings saved in {ckpt_path} do not fit this medtransfer ({__version__}; the "
                f"checkpoint was written by {written_by}): {first_line(error)}. Use a checkpoint written by "
                "this version, or the version that wrote it"
            ) from None

    def after_instantiate_classes(self) -> None:
        """Fail before any training when the checkpoint was trained for another task than the data's; then
        give the model the data it trains on (``datamodule_for``)."""
        data_task = getattr(self.datamodule, "task", None)
        if self._checkpoint_task is not None and data_task is not None:
            saved, path = self._checkpoint_task
            try:
                saved.check_matches(data_task, what=f"the data ({type(self.datamodule).__name__})")
            except TaskMismatchError as err:
                raise TaskMismatchError(f"checkpoint {path} does not fit: {err}") from None
        check_trained(self.model, self.subcommand, self._ckpt_path,
                      self._config().get("allow_untrained", False))
        prepare_for_new_images(self.model, self.datamodule)
        if self._config().get("explain"):
            add_explanations(self.trainer, self.subcommand)
        self.datamodule = datamodule_for(self.model, self.datamodule)

    def before_fit(self) -> None:
        self._all_threads = torch.get_num_threads()
        torch.set_num_threads(step_threads(self.model, self.trainer.strategy.root_device))
        log_dir = self.run_folder()
        if launching_rank():
            lock_run_folder(log_dir)  # a second run writing this folder stops here (released at the end)

    before_validate = before_test = before_fit

    def before_predict(self) -> None:
        self.run_folder()

    def run_folder(self) -> str:
        """This run's folder (``medtransfer.runtime.folder``; a broadcast under DDP: every rank asks), logged with
        where the logger and the checkpoints write, before anything runs."""
        folder = run_directory(self.trainer)
        if process_rank() == 0:
            log.info("%s: run folder %s (results.json, predictions, plots)", self.subcommand, folder)
            log.info("logger: %s", ", ".join(map(logger_description, self.trainer.loggers)) or "none")
            if self.subcommand == "fit":
                callback = self.trainer.checkpoint_callback
                log.info("checkpoints: %s", checkpoint_directory(self.trainer) if callback else "none")
        return folder

    def after_fit(self) -> None:
        metrics = {}
        if self.model.epoch_metrics.get("train"):
            metrics["train"] = self.model.epoch_metrics["train"]
        evaluate = self._config().get("test_after_fit", True) and self.model.evaluate_after_fit
        if evaluate and not self.trainer.interrupted:
            ckpt = self._best_checkpoint()
            self.trainer.validate(self.model, datamodule=self.datamodule, ckpt_path=ckpt, verbose=False)
            metrics["val"] = dict(self.model.epoch_metrics.get("val", {}))
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)
            metrics["test"] = dict(self.model.epoch_metrics.get("test", {}))
        elif "val" in self.model.epoch_metrics:
            metrics["val"] = self.model.epoch_metrics["val"]
        self._write_results("fit", metrics)

    def after_validate(self) -> None:
        self._write_results("validate", {"val": self.model.epoch_metrics.get("val", {})})

    def after_test(self) -> None:
        self._write_results("test", {"test": self.model.epoch_metrics.get("test", {})})

    def after_predict(self) -> None:
        writer = next((cb for cb in self.trainer.callbacks if isinstance(cb, PredictionWriter)), None)
        if writer is not None and writer.path is not None:
            print(f"predictions: {writer.path}")

    def _best_checkpoint(self) -> str | None:
        callback = self.trainer.checkpoint_callback
        if callback is None:
            return None
        if getattr(callback, "best_model_path", ""):
            return "best"
        return getattr(callback, "last_model_path", None) or None

    def _config(self) -> dict:
        return self.config[self.subcommand].as_dict() if self.subcommand else self.config.as_dict()

    def _write_results(self, verb: str, metrics: dict) -> None:
        torch.set_num_threads(self._all_threads)  # the statistics of the results: every thread again
        log_dir = run_directory(self.trainer)  # a broadcast under DDP: every rank must ask
        if not self.trainer.is_global_zero:
            return
        model: MedTransferModule = self.model
        datamodule: MedicalDataModule = self.datamodule
        config = self._config()
        seed = os.environ.get("PL_GLOBAL_SEED")  # the seed really used, also when the config asked for any
        results = build_results(
            verb=verb,
            metrics=metrics,
            task=model.task.to_dict() if model.task is not None else None,
            data=datamodule.describe() if hasattr(datamodule, "describe") else {},
            model=model.describe(),
            seed=int(seed) if seed is not None else config.get("seed_everything"),
            config=config,
            wall_time_s=time.perf_counter() - self._started,
            extra=model.extra_results(),
            checkpoint=self.trainer.ckpt_path,
            **self._test_statistics(metrics, config, log_dir),
        )
        path = write_json_atomic(os.path.join(log_dir, "results.json"), results)
        print(f"results: {path}")
        if "test" in metrics:
            shown = {k: v for k, v in metrics["test"].items() if "/" not in k}
            bounds = results["intervals"].get("test", {}).get("metrics", {})
            print("test metrics: " + ", ".join(f"{k}={v:.4f}{_interval_text(bounds.get(k))}"
                                               for k, v in shown.items()))

    def _test_statistics(self, metrics: dict, config: dict, log_dir: str) -> dict:
        """``predictions`` and ``intervals`` of results.json for a run that tested: its test predictions file
        and the confidence intervals of its test metrics (``--intervals.*``)."""
        writer = next((cb for cb in self.trainer.callbacks if isinstance(cb, TestPredictionWriter)), None)
        if "test" not in metrics or writer is None or writer.predictions is None:
            return {}
        entry = {"predictions": {"test": os.path.relpath(writer.path, log_dir)}}
        settings = config.get("intervals") or {}
        resamples = int(settings.get("resamples", 1000))
        if resamples > 0 and writer.predictions.labels is not None:
            computable = writer.predictions.metrics()
            names = [name for name in metrics["test"] if name in computable.names()]
            entry["intervals"] = {"test": test_intervals(
                computable, names, writer.predictions.groups, resamples, int(settings.get("seed", 0)),
                float(settings.get("confidence", 0.95)))}
        return entry


class RunConfig(SaveConfigCallback):
    """LightningCLI's ``config.yaml`` in the run's folder (``medtransfer.runtime.folder``), whatever the logger:
    Lightning writes it to ``trainer.log_dir``, which W&B and MLflow runs share."""

    def save_config(self, trainer, pl_module, stage: str) -> None:  # rank zero only
        path = Path(local_run_directory(trainer)) / self.config_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, path, skip_none=False, overwrite=self.overwrite,
                         multifile=self.multifile)


def _interval_text(bounds: dict | None) -> str:
    return "" if bounds is None else f" [{bounds['low']:.4f}, {bounds['high']:.4f}]"


def datamodule_for(model, datamodule):
    """What ``model`` trains and evaluates on: a frozen head with ``feature_cache`` on gets the feature
    stores of ``datamodule``'s splits, a self-supervised model the views it asks for, any other the images."""
    if isinstance(model, FrozenBackboneModule) and model.feature_cache:
        return model.cached_datamodule(datamodule)
    if (spec := getattr(model, "view_spec", None)) is not None:
        datamodule.serve_views(spec)
    return datamodule


def step_threads(model, device: torch.device) -> int:
    """The intra-op CPU threads a command's steps run on: one for a head on cached features on a CPU that
    asks for it (``FrozenBackboneModule.one_cpu_thread_steps``; extraction and the exact solve still take
    every thread, ``EmbeddingsDataModule.all_threads``), all of them otherwise."""
    cached = isinstance(model, FrozenBackboneModule) and model.feature_cache and model.one_cpu_thread_steps
    return 1 if cached and device.type == "cpu" else torch.get_num_threads()


def trainer_defaults() -> dict:
    """Trainer defaults; ``callbacks`` here are ones that no config can remove (how the command stops: every
    DDP rank on one's error, a SLURM job requeued on its signal; the visible, replaceable ones are
    ``default_callbacks``)."""
    return {
        "logger": {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                   "init_args": {"save_dir": "runs", "name": "medtransfer"}},
        "callbacks": [StopAllRanks(), SlurmRequeue()],
    }


def default_callbacks() -> list[dict]:
    """The default of ``trainer.callbacks``, as ``--print_config`` shows it: a config that sets
    ``trainer.callbacks`` replaces the whole list (copy it from ``--print_config`` to change one), and
    ``--trainer.callbacks+=<class>`` adds one. Without ``TaskCheckpoint``, ``fit`` tests the last weights and
    ``--ckpt_path last`` finds nothing; without ``TestPredictionWriter``, results.json has no per-sample
    predictions or confidence intervals."""
    return [
        _class_config(TaskCheckpoint),
        _class_config(LearningRates, logging_interval="epoch"),
        _class_config(TrainingImageGrid),
        _class_config(TestPlots),
        _class_config(TestPredictionWriter),
        _class_config(PredictionWriter),
    ]


def _class_config(cls: type, **init_args) -> dict:
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


def run_lightning_cli(argv: list[str] | None,
                      cli_class: type[MedTransferCLI] = MedTransferCLI) -> MedTransferCLI:
    """The CLI on ``argv``; ``cli_class`` lets tools reuse the exact parser (e.g. the benchmark's config
    check)."""
    with torch_threads(None), run_locks():  # the steps' thread count and the run folder's lock: until the end
        return cli_class(
            model_class=MedTransferModule,
            datamodule_class=MedicalDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            trainer_defaults=trainer_defaults(),
            auto_configure_optimizers=False,  # each model builds its own (groups, schedules, sweeps)
            save_config_callback=RunConfig,
            save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
            parser_kwargs={"default_env": False},
            args=argv,
        )


def main(argv: list[str] | None = None) -> None:
    """The ``medtransfer`` command. An error about the user's input (a ``MedTransferError`` anywhere in the
    chain of causes) ends it with its message and exit status 2, not a traceback."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        configure_logging()
        if argv and argv[0] in TOOL_VERBS:
            module = importlib.import_module(TOOL_VERBS[argv[0]][0])
            sys.exit(module.main(argv[1:]))
        if not argv or argv[0] in ("-h", "--help"):
            print(tool_verbs_help())
        run_lightning_cli(None if from_command_line else argv)  # None: LightningCLI reads sys.argv itself
    except Requeued as requeued:  # not a failure: the job runs again, continuing from last.ckpt
        if not dist.is_initialized() or dist.get_rank() == 0:
            print(requeued, file=sys.stderr)
    except Exception as error:
        if os.environ.get("MEDTRANSFER_TRACEBACK") == "1":
            raise
        if (message := user_error_message(error)) is not None:
            exit_on_user_error(f"medtransfer: error: {message}")
        if (stopped := stopped_rank_message()) is not None:  # rank 0, failing because another rank stopped
            exit_on_user_error(stopped)
        raise
    finally:
        close_process_group()


def exit_on_user_error(line: str) -> NoReturn:
    """Print ``line`` and end with status 2. A DDP rank ends at once once its process group is closed: the
    interpreter's own exit after a failed collective took from 10 s to over a minute (in the teardown of the
    communication objects), while the rank's launcher waited."""
    print(line, file=sys.stderr)
    if close_process_group():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2)
    sys.exit(2)


def close_process_group() -> bool:
    """End a DDP run's process group before the interpreter exits; whether it had more than one rank. Left
    to the exit handlers, its communication threads were sometimes still alive when their objects were
    destroyed, and the process aborted ("terminate called without an active exception", exit status 134)
    after writing its results."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    several = dist.get_world_size() > 1
    dist.destroy_process_group()
    return several


def tool_verbs_help() -> str:
    lines = ["medtransfer verbs: fit, validate, test, predict (LightningCLI; see `medtransfer fit --help`)"]
    lines += [f"  {name:<10} {help_text}" for name, (_, help_text) in TOOL_VERBS.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
