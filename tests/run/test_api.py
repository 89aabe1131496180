"""``medtransfer.run``: the Python functions do what the command does, from a config or from objects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from medtransfer import run
from medtransfer.backbones.backbone import state_dict_fingerprint
from medtransfer.cli import main
from medtransfer.datamodules import SyntheticMedical
from medtransfer.lightning_modules import Finetune
from medtransfer.run.parse_errors import ConfigError
from tests.conftest import QUICKSTART, tiny_cli_args

REPO = Path(__file__).resolve().parents[2]


def results_in(runs: Path, name: str = "tiny") -> dict:
    (path,) = (runs / name).glob("version_*/results.json")
    return json.loads(path.read_text())


def test_fit_from_the_quickstart_config_writes_what_the_command_writes(tmp_path):
    main(["fit", *tiny_cli_args(tmp_path / "command", max_epochs=2)])
    result = run.fit(QUICKSTART, args=tiny_cli_args(tmp_path / "python", max_epochs=2)[2:])
    command, python = results_in(tmp_path / "command"), results_in(tmp_path / "python")
    assert python == json.loads(result.results_path.read_text()) == result.results
    for split in ("train", "val", "test"):
        assert python["metrics"][split] == pytest.approx(command["metrics"][split], abs=1e-6)
    for name, bounds in command["intervals"]["test"]["metrics"].items():
        assert python["intervals"]["test"]["metrics"][name] == pytest.approx(bounds, abs=1e-6)
    assert result.metrics["test"] == pytest.approx(command["metrics"]["test"], abs=1e-6)
    assert result.intervals == python["intervals"] and result.status == "finished"
    assert result.best_checkpoint.is_file() and result.best_checkpoint.name.startswith("best-epoch=")
    assert result.run_dir == result.results_path.parent and (result.run_dir / "config.yaml").is_file()
    assert python["config"]["config"] and python["config"]["trainer"]["max_epochs"] == 2


def tiny_objects(tmp_path: Path):
    pl.seed_everything(0, workers=True)
    data = SyntheticMedical(num_train=48, num_val=24, num_test=25, native_size=32, image_size=32,
                            batch_size=16)
    model = Finetune(backbone="test_resnet", task=data.task, lr=1e-3, weight_decay=1e-4)
    trainer = run.default_trainer("objects", save_dir=tmp_path / "runs", max_epochs=1, log_every_n_steps=1,
                                  enable_progress_bar=False, enable_model_summary=False,
                                  default_root_dir=tmp_path)
    return model, data, trainer


def test_fit_from_objects_tests_the_best_checkpoint_and_records_the_weights(tmp_path):
    model, data, trainer = tiny_objects(tmp_path)
    initial = state_dict_fingerprint(model.backbone.model.state_dict())
    result = run.fit(model=model, data=data, trainer=trainer)
    results = result.results
    assert set(results["metrics"]) == {"train", "val", "test"} and results["status"] == "finished"
    assert results["checkpoint"] == str(result.best_checkpoint)
    assert results["intervals"]["test"]["resamples"] == 1000
    weights = results["model"]["weights"]
    assert weights["initial"] == [initial] == [results["model"]["backbones"][0]["fingerprint"]]
    assert weights["produced"]["fingerprint"] == state_dict_fingerprint(model.backbone.model.state_dict())
    assert weights["produced"]["fingerprint"] != initial
    assert results["config"]["model"]["class_path"] == "medtransfer.lightning_modules.finetune.Finetune"
    assert (result.run_dir / "preflight.json").is_file() and results["preflight"]["model"] == "Finetune"


def test_a_trainer_built_elsewhere_gets_the_guards_before_its_checkpoint_callback(tmp_path):
    model, data, _ = tiny_objects(tmp_path)
    trainer = pl.Trainer(max_epochs=1, enable_progress_bar=False, enable_model_summary=False,
                         logger=pl.loggers.CSVLogger(tmp_path / "runs", name="plain"))
    result = run.fit(model=model, data=data, trainer=trainer)
    names = [type(c).__name__ for c in trainer.callbacks]
    assert names.index("DivergenceGuard") < names.index("ModelCheckpoint")
    assert result.results["metrics"]["test"] and result.run_dir == tmp_path / "runs" / "plain" / "version_0"


def test_test_and_predict_from_a_checkpoint(tmp_path):
    fitted = run.fit(QUICKSTART, args=tiny_cli_args(tmp_path / "runs")[2:])
    tested = run.test(QUICKSTART, args=tiny_cli_args(tmp_path / "runs")[2:],
                      ckpt_path=str(fitted.best_checkpoint))
    assert tested.metrics["test"] == pytest.approx(fitted.metrics["test"], abs=1e-6)
    assert tested.results["verb"] == "test" and tested.run_dir != fitted.run_dir
    moved = shutil.copy(fitted.best_checkpoint, tmp_path / "moved.ckpt")  # named otherwise: one model still
    again = run.test(QUICKSTART, args=tiny_cli_args(tmp_path / "runs")[2:], ckpt_path=str(moved))
    scored = {r.results["model"]["weights"]["scored"] for r in (fitted, tested, again)}
    assert len(scored) == 1  # the fingerprint of the model scored, wherever its checkpoint lies
    predicted = run.predict(QUICKSTART, args=tiny_cli_args(tmp_path / "runs")[2:],
                            ckpt_path=str(fitted.best_checkpoint))
    assert predicted.predictions_path.is_file() and predicted.results == {}
    assert not (predicted.run_dir / "results.json").exists()


def test_pretrain_returns_the_export_and_results_name_its_fingerprint(tmp_path):
    args = ["--config", str(REPO / "configs" / "pretrain" / "simclr.yaml"),  # first: tiny_cli's logger wins
            *tiny_cli_args(tmp_path / "runs", num_train=32)[2:], "--model.init_args.backbone", "test_resnet",
            "--data.init_args.batch_size", "8", "--trainer.limit_train_batches", "2"]
    result = run.pretrain(QUICKSTART, args=args)
    assert result.exported is not None and Path(result.exported["path"]).is_file()
    produced = result.results["model"]["weights"]["produced"]
    assert produced["fingerprint"] == result.exported["fingerprint"] != result.results["model"]["weights"][
        "initial"][0]
    assert not Path(produced["path"]).is_absolute()
    assert (result.run_dir / produced["path"]).resolve() == Path(result.exported["path"]).resolve()


def test_a_checkpoint_scored_from_objects_is_checked_as_from_a_config(tmp_path):
    """``run.test(model=, data=, ckpt_path=)`` reads what the checkpoint records of its training's data: a
    32 px model given 64 px images, or a binary model given a three-class dataset, is refused before it
    runs."""
    from medtransfer.run.inference import OtherImagesError
    from medtransfer.task import TaskMismatchError

    model, data, trainer = tiny_objects(tmp_path)
    best = run.fit(model=model, data=data, trainer=trainer).best_checkpoint
    larger = SyntheticMedical(num_train=48, num_val=24, num_test=25, native_size=32, image_size=64,
                              batch_size=16)
    with pytest.raises(OtherImagesError, match=r"data.init_args.image_size 64 \(trained at 32 px\)"):
        run.test(model=Finetune(backbone="test_resnet", task=larger.task), data=larger, ckpt_path=str(best))
    three = SyntheticMedical(kind="multiclass", num_train=48, num_val=24, num_test=25, native_size=32,
                             image_size=32, batch_size=16)
    with pytest.raises(TaskMismatchError, match=f"checkpoint {best} does not fit"):
        run.test(model=Finetune(backbone="test_resnet", task=three.task), data=three, ckpt_path=str(best))
    tested = run.test(model=Finetune(backbone="test_resnet", task=data.task), data=data, ckpt_path=str(best))
    assert tested.results["metrics"]["test"]


def test_a_config_and_objects_together_are_refused(tmp_path):
    model, data, trainer = tiny_objects(tmp_path)
    with pytest.raises(ConfigError, match="not both"):
        run.fit(QUICKSTART, model=model)
    with pytest.raises(ConfigError, match="a model and data"):
        run.fit(model=model)
    with pytest.raises(ConfigError, match="SSLPretrain"):
        run.pretrain(model=model, data=data, trainer=trainer)


def test_a_head_on_cached_features_gets_its_data_handed_not_fetched(tmp_path):
    """A frozen head trained by a plain Trainer without ``attach_data`` says how to hand it its data."""
    from medtransfer.lightning_modules import LinearProbe
    from medtransfer.lightning_modules.frozen import FeatureCacheError

    data = SyntheticMedical(num_train=16, num_val=8, num_test=8, native_size=32, image_size=32, batch_size=8)
    probe = LinearProbe(backbone="test_resnet", task=data.task, features_dir=str(tmp_path / "features"))
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(FeatureCacheError, match="attach_data"):
        trainer.fit(probe, datamodule=data)
    assert torch.get_num_threads() >= 1
