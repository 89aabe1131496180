"""What stops a run instead of letting it give a wrong answer that looks right: diverged training is recorded
as failed and never scored; a finished run is never overwritten; a run that never started leaves no
folder."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pytorch_lightning.plugins.environments import LightningEnvironment

from medtransfer import run
from medtransfer.cli import main
from medtransfer.datamodules import SyntheticMedical
from medtransfer.errors import ConfigValueError
from medtransfer.lightning_modules import Finetune, LinearSweep
from medtransfer.run.guards import DivergedError, DivergenceGuard
from medtransfer.run.trainer_values import check_other_nodes_can_join

REPO = Path(__file__).resolve().parents[2]


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def exit_status(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as ended:
        main(argv)
    return ended.value.code


def test_diverged_training_stops_at_once_and_is_recorded_as_failed(tiny_cli, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert exit_status(["fit", *tiny_cli(runs, max_epochs=3), "--model.init_args.lr", "1e10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("medtransfer: error: training diverged at epoch 0, step ")
    assert "Traceback" not in "\n".join(err)
    (folder,) = (runs / "tiny").glob("version_*")
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "failed" and "test" not in results["metrics"]
    failure = results["failure"]
    assert failure["kind"] == "diverged" and failure["epoch"] == 0 and failure["step"] >= 1
    assert not (folder / "test_predictions.csv").exists()
    assert not list(folder.rglob("best-*.ckpt"))  # no "best" model was kept from NaN weights


def test_the_guard_checks_losses_and_parameters_on_a_cpu(tmp_path):
    guard = DivergenceGuard()
    trainer = type("T", (), {"world_size": 1, "current_epoch": 2, "global_step": 7,
                             "state": type("S", (), {"fn": "fit"})(), "sanity_checking": False})()
    module = torch.nn.Linear(2, 1)
    guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(0.5)}, None, 0)
    guard.on_train_batch_end(trainer, module, None, None, 1)  # a step without a loss (the exact solver)
    guard.on_train_epoch_end(trainer, module)
    with pytest.raises(DivergedError, match="epoch 2, step 7: the training loss is not finite") as caught:
        guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(float("inf"))}, None, 2)
    assert caught.value.record()["step"] == 7
    with torch.no_grad():
        module.weight[0, 0] = float("nan")
    with pytest.raises(DivergedError, match=r"parameters are not finite \(weight\)"):
        DivergenceGuard().on_train_epoch_end(trainer, module)


def test_a_sweep_head_that_diverges_alone_loses_the_selection_not_the_run(tmp_path):
    from medtransfer.datamodules import SyntheticMedical
    from medtransfer.run import default_trainer, fit

    data = SyntheticMedical(num_train=48, num_val=24, num_test=16, native_size=32, image_size=32,
                            batch_size=16)
    sweep = LinearSweep(backbone="test_resnet", lrs=[1e-2, float("inf")], weight_decays=[0.0],
                        optimizer="sgd", task=data.task, features_dir=str(tmp_path / "features"))
    trainer = default_trainer("sweep", save_dir=tmp_path / "runs", max_epochs=2, enable_progress_bar=False,
                              enable_model_summary=False)
    result = fit(model=sweep, data=data, trainer=trainer)
    assert result.status == "finished" and int(sweep.selected) == 0
    assert all(torch.isfinite(torch.tensor(list(result.metrics["test"].values()))))


def test_a_finished_run_is_never_overwritten(tiny_cli, tmp_path, capsys):
    runs = tmp_path / "runs"
    pinned = [*tiny_cli(runs), "--trainer.logger.init_args.version", "0"]
    main(["fit", *pinned])
    folder = runs / "tiny" / "version_0"
    before = digests(folder)
    for verb in ("fit", "test"):
        extra = ["--ckpt_path", str(folder / "checkpoints" / "last.ckpt")] if verb == "test" else []
        assert exit_status([verb, *pinned, *extra]) == 2
        assert "holds a finished run (results.json)" in capsys.readouterr().err
    assert digests(folder) == before and not list(folder.rglob("*-v1.ckpt"))
    # unpinned, the same command makes a new version; --ckpt_path last has nothing to continue
    main(["fit", *tiny_cli(runs)])
    assert (runs / "tiny" / "version_1" / "results.json").is_file()
    assert exit_status(["fit", *tiny_cli(runs), "--ckpt_path", "last"]) == 2
    assert "is finished" in capsys.readouterr().err and digests(folder) == before


def test_a_run_that_fails_before_training_leaves_no_folder(tiny_cli, tmp_path, capsys):
    """The label fraction is chosen when the run's splits are first read (its pre-flight summary), after
    the run folder was made: the folder goes again, and the next run's version number is not shifted."""
    runs = tmp_path / "runs"
    refused = ["--data.init_args.train_fraction", "500"]
    assert exit_status(["fit", *tiny_cli(runs), *refused]) == 2
    assert "train_fraction" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not runs.exists()  # nor <save_dir>/<name>, made for it
    main(["fit", *tiny_cli(runs)])
    assert (runs / "tiny" / "version_0" / "results.json").is_file()
    for name in ("tiny", "other"):  # folders that hold another run's stay
        assert exit_status(["fit", *tiny_cli(runs, name=name), *refused]) == 2
    assert sorted(p.relative_to(runs).as_posix() for p in runs.glob("*/*")) == ["tiny/version_0"]


def test_a_run_in_bf16_on_a_cpu_that_emulates_it_is_told_so_at_its_start(tiny_cli, tmp_path, caplog,
                                                                         monkeypatch):
    # the scores stay right; the warning is about time (~15x here, benchmarks/cpu_precision.py)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    args = [*tiny_cli(tmp_path / "runs"), "--trainer.accelerator", "cpu", "--trainer.precision", "bf16-mixed",
            "--allow_untrained", "true"]
    with caplog.at_level(logging.WARNING, logger="medtransfer.runtime.cpu_precision"):
        main(["test", *args])
    (record,) = [r for r in caplog.records if r.name == "medtransfer.runtime.cpu_precision"]
    assert "trainer.precision bf16-mixed on this CPU" in record.getMessage()


def test_a_python_trainer_that_starts_ranks_by_multiprocessing_is_refused_before_anything_runs(tmp_path):
    data = SyntheticMedical(num_train=16, num_val=8, num_test=8, native_size=32, image_size=32, batch_size=8)
    model = Finetune(backbone="test_resnet", task=data.task)
    trainer = run.default_trainer("spawned", save_dir=tmp_path / "runs", max_epochs=1, accelerator="cpu",
                                  devices=1, strategy="ddp_spawn", enable_progress_bar=False)
    with pytest.raises(ConfigValueError, match="trainer.strategy=DDPStrategy: it runs each fit and each"):
        run.fit(model=model, data=data, trainer=trainer)
    assert not (tmp_path / "runs").exists()


def test_several_nodes_without_a_launcher_are_refused_instead_of_waiting_30_minutes(tmp_path, monkeypatch):
    # seen: rank 0 waited in the process group for nodes nothing started, and SIGTERM did not end it
    for name in ("NODE_RANK", "GROUP_RANK", "MASTER_ADDR", "SLURM_NTASKS", "SLURM_JOB_NAME",
                 "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    data = SyntheticMedical(num_train=16, num_val=8, num_test=8, native_size=32, image_size=32, batch_size=8)
    model = Finetune(backbone="test_resnet", task=data.task)
    trainer = run.default_trainer("nodes", save_dir=tmp_path / "runs", max_epochs=1, accelerator="cpu",
                                  devices=1, num_nodes=2, enable_progress_bar=False)
    with pytest.raises(ConfigValueError, match=r"trainer.num_nodes=2: nothing starts the other nodes' ranks"):
        run.fit(model=model, data=data, trainer=trainer)
    assert not (tmp_path / "runs").exists()


def test_a_node_told_its_place_is_left_to_join():
    strategy = SimpleNamespace(cluster_environment=LightningEnvironment())
    trainer = SimpleNamespace(num_nodes=2, strategy=strategy)
    check_other_nodes_can_join(trainer, env={"NODE_RANK": "1", "MASTER_ADDR": "node0"})
    with pytest.raises(ConfigValueError):
        check_other_nodes_can_join(trainer, env={})
