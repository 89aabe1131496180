"""The ``medtransfer`` command: LightningCLI verbs fit/validate/test/predict, plus the tool verbs."""

from __future__ import annotations

import importlib
import os
import sys
import time

from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.cli import LightningCLI

from .callbacks import TaskCheckpoint
from .datamodules import MedicalDataModule
from .lightning_modules import TaskModule
from .results import build_results, write_json_atomic

# verbs outside LightningCLI: name -> (module with main(argv), one-line help)
TOOL_VERBS: dict[str, tuple[str, str]] = {
    "extract": ("medtransfer.features.cli", "compute (or reuse) the feature stores of a frozen backbone"),
    "weights": ("medtransfer.backbones.cli", "list, check and download pretrained weights"),
    "benchmark": ("medtransfer.benchmark.cli", "run a grid of experiments and report tables and plots"),
}


class MedTransferCLI(LightningCLI):
    """LightningCLI with the task linked from data to model, default logging/checkpointing, results.json, and
    ``fit`` followed by a test of the best checkpoint."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.task", "model.init_args.task", apply_on="instantiate")
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="fit: validate and test the best checkpoint when training ends")

    def before_instantiate_classes(self) -> None:
        self._started = time.perf_counter()

    def after_fit(self) -> None:
        metrics = {}
        if self.model.epoch_metrics.get("train"):
            metrics["train"] = self.model.epoch_metrics["train"]
        if self._config().get("test_after_fit", True) and not self.trainer.interrupted:
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
        if not self.trainer.is_global_zero:
            return
        model: TaskModule = self.model
        datamodule: MedicalDataModule = self.datamodule
        config = self._config()
        results = build_results(
            verb=verb,
            metrics=metrics,
            task=model.task.to_dict(),
            data=datamodule.describe() if hasattr(datamodule, "describe") else {},
            model={"name": type(model).__name__, "backbones": model.backbone_descriptions()},
            seed=config.get("seed_everything"),
            config=config,
            wall_time_s=time.perf_counter() - self._started,
            extra=model.extra_results(),
        )
        log_dir = self.trainer.log_dir or os.getcwd()
        path = write_json_atomic(os.path.join(log_dir, "results.json"), results)
        print(f"results: {path}")
        if "test" in metrics:
            print("test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics["test"].items() if "/" not in k))


def trainer_defaults() -> dict:
    return {
        "logger": {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                   "init_args": {"save_dir": "runs", "name": "medtransfer"}},
        "callbacks": [TaskCheckpoint(), LearningRateMonitor(logging_interval="epoch")],
    }


def run_lightning_cli(argv: list[str]) -> MedTransferCLI:
    return MedTransferCLI(
        model_class=TaskModule,
        datamodule_class=MedicalDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        trainer_defaults=trainer_defaults(),
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": False},
        args=argv,
    )


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TOOL_VERBS:
        module = importlib.import_module(TOOL_VERBS[argv[0]][0])
        sys.exit(module.main(argv[1:]))
    if not argv or argv[0] in ("-h", "--help"):
        print(tool_verbs_help())
    run_lightning_cli(argv)


def tool_verbs_help() -> str:
    lines = ["medtransfer verbs: fit, validate, test, predict (LightningCLI; see `medtransfer fit --help`)"]
    lines += [f"  {name:<10} {help_text}" for name, (_, help_text) in TOOL_VERBS.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
