"""Every run writes results.json, predictions, plots and config.yaml into a folder of its own, whatever its
logger (``medtransfer.runtime.folder``): CSV (version folders) and MLflow with a file store (the run's folder
in mlruns), where ``trainer.log_dir`` is the store shared by all runs; and the run says where it writes."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import Logger

from medtransfer.cli import main
from medtransfer.runtime.folder import checkpoint_directory, run_directory

RUN_FILES = ("results.json", "test_predictions.csv", "test_roc.png", "config.yaml")


def with_logger(args: list[str], class_path: str, **init_args) -> list[str]:
    """``args`` (tiny_cli's) with their TensorBoard logger settings replaced by ``class_path``'s."""
    kept = [a for i, a in enumerate(args) if not a.startswith("--trainer.logger")
            and not (i and args[i - 1].startswith("--trainer.logger"))]
    return [*kept, "--trainer.logger", json.dumps({"class_path": class_path, "init_args": init_args}),
            "--intervals.resamples", "0"]


@pytest.fixture(scope="module")
def csv_fit(tmp_path_factory, tiny_cli) -> tuple[Path, list[str], str]:
    """A tiny fit (then test) with the CSV logger, on half of its training labels: runs dir, arguments,
    and what medtransfer's logging wrote to stderr."""
    runs = tmp_path_factory.mktemp("csv") / "runs"
    args = with_logger(tiny_cli(runs, num_train=32, num_val=16, num_test=16),
                       "pytorch_lightning.loggers.CSVLogger", save_dir=str(runs), name="csv")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):  # medtransfer's handler writes to the current sys.stderr
        main(["fit", *args, "--data.init_args.train_fraction", "0.5"])
    return runs, args, stderr.getvalue()


def test_the_runs_info_messages_show_on_stderr(csv_fit):
    """The label fraction kept and where the run writes, from the command's logging (runtime.logs)."""
    runs, _, err = csv_fit
    assert "INFO medtransfer.datamodules.base: " in err and "train_fraction=0.5 keeps 16 of 32" in err
    run = runs / "csv" / "version_0"
    assert f"fit: run folder {run}" in err and f"checkpoints: {run / 'checkpoints'}" in err


def test_csv_runs_write_into_their_own_version_folders_and_say_where(csv_fit, capfd):
    runs, args, _ = csv_fit
    checkpoint = next((runs / "csv" / "version_0" / "checkpoints").glob("best*.ckpt"))
    main(["test", *args, "--ckpt_path", str(checkpoint)])
    err = capfd.readouterr().err
    first, second = runs / "csv" / "version_0", runs / "csv" / "version_1"
    for run in (first, second):
        assert all((run / name).is_file() for name in RUN_FILES), sorted(p.name for p in run.iterdir())
    assert json.loads((first / "results.json").read_text())["verb"] == "fit"
    assert json.loads((second / "results.json").read_text())["verb"] == "test"
    assert f"medtransfer.run.session: test: run folder {second}\n" in err


def test_mlflow_file_store_runs_keep_separate_folders_and_get_the_figures(csv_fit, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow >= 3.7 asks for a database otherwise
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # tests send nothing anywhere
    runs, args, _ = csv_fit
    checkpoint = next((runs / "csv" / "version_0" / "checkpoints").glob("best*.ckpt"))
    store = tmp_path / "mlruns"
    mlflow_args = with_logger(args, "pytorch_lightning.loggers.MLFlowLogger", experiment_name="tiny",
                              tracking_uri=store.as_uri(), save_dir=str(store))
    for _ in range(2):
        main(["test", *mlflow_args, "--ckpt_path", str(checkpoint)])
    run_folders = sorted(path.parent for path in store.glob("*/*/results.json"))
    assert len(run_folders) == 2 and len({p.name for p in run_folders}) == 2  # two MLflow run ids
    for run in run_folders:
        assert all((run / name).is_file() for name in RUN_FILES)
        assert (run / "artifacts" / "figures" / "test" / "roc.png").is_file()  # log_figure: an artifact
    assert not (store / "results.json").exists() and not (store / "config.yaml").exists()


class RunIdLogger(Logger):
    """The shape of W&B's and MLflow's loggers: a shared save_dir, a name, and a run id that exists only
    once the experiment has started."""

    def __init__(self, save_dir: str) -> None:
        super().__init__()
        self._save_dir, self._run_id = save_dir, None

    @property
    def experiment(self):
        self._run_id = self._run_id or "run-7f3a"
        return self

    name = property(lambda self: "project")
    version = property(lambda self: self._run_id)
    save_dir = property(lambda self: self._save_dir)

    def log_metrics(self, metrics, step=None) -> None: ...

    def log_hyperparams(self, params, *args, **kwargs) -> None: ...


def test_a_run_id_logger_gets_save_dir_name_run_id(tmp_path):
    trainer = pl.Trainer(logger=RunIdLogger(str(tmp_path)), default_root_dir=str(tmp_path / "root"),
                         enable_progress_bar=False, enable_model_summary=False)
    assert trainer.log_dir == str(tmp_path)  # Lightning's: shared by every run of this logger
    assert run_directory(trainer) == str(tmp_path / "project" / "run-7f3a")
    assert checkpoint_directory(trainer) == str(tmp_path / "project" / "run-7f3a" / "checkpoints")


def test_without_a_logger_the_run_folder_is_the_root_dir(tmp_path):
    trainer = pl.Trainer(logger=False, default_root_dir=str(tmp_path), enable_progress_bar=False)
    assert run_directory(trainer) == str(tmp_path)


def test_figures_go_to_wandb_as_rgb_images_and_not_to_csv(tmp_path):
    """W&B is not installed here: a WandbLogger without its constructor records what log_image receives."""
    from matplotlib.figure import Figure
    from pytorch_lightning.loggers import CSVLogger, WandbLogger

    from medtransfer.runtime.figures import send_figure, takes_images

    figure = Figure(figsize=(2, 1))
    figure.add_subplot().plot([0, 1])
    wandb = object.__new__(WandbLogger)
    calls = []
    wandb.log_image = lambda key, images, step: calls.append((key, images, step))
    send_figure(wandb, "test/roc", figure, step=5)
    (key, images, step), = calls
    assert key == "test/roc" and step == 5
    assert images[0].dtype == np.uint8 and images[0].shape == (100, 200, 3)
    assert takes_images(wandb) and not takes_images(CSVLogger(str(tmp_path)))
