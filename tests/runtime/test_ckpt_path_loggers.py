"""``--ckpt_path last`` finds the run folders of W&B and MLflow loggers (``<save_dir>/<project>/<run id>``,
``<store>/<experiment id>/<run id>``), pins the logger to the run it continues, and refuses a ``last`` that
several runs could answer. W&B is not installed: its folders are made as Lightning would make them."""

from __future__ import annotations

from pathlib import Path

import pytest
from jsonargparse import Namespace
from pytorch_lightning.callbacks import Callback

from medtransfer.cli import main
from medtransfer.run import config as run_config
from medtransfer.runtime.checkpoints import CheckpointFileError
from medtransfer.runtime.ckpt_path import resolve_last_checkpoint

from .test_folder import with_logger

WANDB = "pytorch_lightning.loggers.WandbLogger"
MLFLOW = "pytorch_lightning.loggers.MLFlowLogger"


def config_of(class_path: str, root: Path, **init_args) -> Namespace:
    logger = Namespace(class_path=class_path, init_args=Namespace(**init_args))
    return Namespace(trainer=Namespace(default_root_dir=str(root), logger=logger))


def last_checkpoint(run_folder: Path) -> Path:
    (run_folder / "checkpoints").mkdir(parents=True)
    (run_folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    return run_folder / "checkpoints" / "last.ckpt"


def test_wandb_runs_are_found_in_their_project_and_the_logger_resumes_the_run_id(tmp_path, monkeypatch):
    checkpoint = last_checkpoint(tmp_path / "wandb" / "medical" / "a1b2c3")
    config = config_of(WANDB, tmp_path / "root", save_dir=str(tmp_path / "wandb"), project="medical",
                       version=None)
    assert resolve_last_checkpoint(config, continue_run=True) == str(checkpoint)
    assert config.trainer.logger.init_args.version == "a1b2c3"  # WandbLogger's id: wandb.init resumes it

    # no save_dir: Lightning's default_root_dir, and the project WANDB_PROJECT names
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    checkpoint = last_checkpoint(tmp_path / "root" / "from-env" / "d4e5f6")
    assert resolve_last_checkpoint(config_of(WANDB, tmp_path / "root"), continue_run=False) == str(checkpoint)


def test_a_last_that_several_runs_could_answer_is_refused_in_one_line(tmp_path):
    for run in ("a1b2c3", "zz9y8x"):
        last_checkpoint(tmp_path / "medical" / run)
    with pytest.raises(CheckpointFileError) as refused:
        resolve_last_checkpoint(config_of(WANDB, tmp_path, project="medical"), continue_run=True)
    message = str(refused.value)
    assert "\n" not in message and "2 runs under" in message and "(a1b2c3, zz9y8x)" in message
    assert "--trainer.logger.init_args.version <run id>" in message
    pinned = config_of(WANDB, tmp_path, project="medical", version="zz9y8x")
    assert resolve_last_checkpoint(pinned, continue_run=True).endswith("zz9y8x/checkpoints/last.ckpt")


def test_mlflow_runs_are_found_in_their_experiment_of_the_file_store(tmp_path):
    store = tmp_path / "mlruns"
    for experiment, name in (("1", "tiny"), ("2", "other")):
        (store / experiment).mkdir(parents=True)
        (store / experiment / "meta.yaml").write_text(f"experiment_id: '{experiment}'\nname: {name}\n")
    checkpoint = last_checkpoint(store / "1" / "0123abcd")
    last_checkpoint(store / "2" / "4567ef01")  # another experiment's run: not this config's
    config = config_of(MLFLOW, tmp_path / "root", experiment_name="tiny", tracking_uri=store.as_uri(),
                       save_dir=str(store), run_id=None)
    assert resolve_last_checkpoint(config, continue_run=True) == str(checkpoint)
    assert config.trainer.logger.init_args.run_id == "0123abcd"

    # a database or server store: the run folders lie under default_root_dir; no experiment names there
    sqlite = last_checkpoint(tmp_path / "root" / "3" / "89abcdef")
    config = config_of(MLFLOW, tmp_path / "root", tracking_uri="sqlite:///mlflow.db", run_id="89abcdef")
    assert resolve_last_checkpoint(config, continue_run=True) == str(sqlite)
    with pytest.raises(CheckpointFileError, match="no .*mlruns"):
        resolve_last_checkpoint(config_of(MLFLOW, tmp_path, save_dir=str(tmp_path / "mlruns")), False)


class StopAtEpoch(Callback):
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("stopped at epoch 1")


@pytest.mark.slow
def test_an_mlflow_run_continues_in_its_own_run_folder(tiny_cli, tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow >= 3.7 asks for a database otherwise
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    store = tmp_path / "mlruns"
    args = [*with_logger(tiny_cli(tmp_path, max_epochs=2), MLFLOW, experiment_name="tiny",
                         tracking_uri=store.as_uri(), save_dir=str(store)), "--ckpt_path", "last"]
    fixed = run_config.fixed_callbacks
    with monkeypatch.context() as patch:
        patch.setattr(run_config, "fixed_callbacks", lambda: [*fixed(), StopAtEpoch()])
        with pytest.raises(RuntimeError, match="stopped at epoch 1"):
            main(["fit", *args])
    (checkpoint,) = store.glob("*/*/checkpoints/last.ckpt")
    capsys.readouterr()
    main(["fit", *args])
    assert f"--ckpt_path last: {checkpoint}" in capsys.readouterr().err
    assert [p.parent for p in store.glob("*/*/results.json")] == [checkpoint.parent.parent]  # one MLflow run
