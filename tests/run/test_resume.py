"""``medtransfer fit --ckpt_path last`` after an interrupted run ends exactly where an uninterrupted run
ends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import Callback

from medtransfer.cli import main
from medtransfer.run import config as run_config


class SimulatedPreemption(RuntimeError):
    """Stands in for a job killed mid-training (SLURM preemption, a crash)."""


class PreemptAtEpoch(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise SimulatedPreemption(f"preempted at the start of epoch {self.epoch}")


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


REPO = Path(__file__).resolve().parents[2]
MODELS = {
    # dropout and the cosine schedule make the comparison sensitive to RNG state and step counts
    "finetune": lambda tmp_path: ["--model.init_args.head_dropout", "0.3"],
    # stacked heads on feature stores: the headwise optimizer's state and the selected head must resume too
    "linear_sweep": lambda tmp_path: [
        "--config", str(REPO / "configs" / "model" / "linear_sweep.yaml"),
        "--model.init_args.backbone", "test_resnet",
        "--model.init_args.lrs", "[0.001, 0.01, 0.1]",
        "--model.init_args.features_dir", str(tmp_path / "features"),
    ],
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_resuming_an_interrupted_run_gives_the_uninterrupted_results(model, tiny_cli, tmp_path, monkeypatch,
                                                                     capsys):
    args = [*tiny_cli(tmp_path / "runs", max_epochs=4), *MODELS[model](tmp_path)]
    args_a = [*tiny_cli(tmp_path / "uninterrupted", max_epochs=4), *MODELS[model](tmp_path)]
    main(["fit", *args_a])

    fixed = run_config.fixed_callbacks
    with monkeypatch.context() as patch:
        patch.setattr(run_config, "fixed_callbacks", lambda: [*fixed(), PreemptAtEpoch(2)])
        with pytest.raises(SimulatedPreemption):
            main(["fit", *args, "--ckpt_path", "last"])  # nothing to resume yet: starts a new run
    assert "starting a new run" in capsys.readouterr().err
    run_dir = tmp_path / "runs" / "tiny" / "version_0"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    assert not (run_dir / "results.json").exists()

    main(["fit", *args, "--ckpt_path", "last"])
    assert f"--ckpt_path last: {run_dir / 'checkpoints' / 'last.ckpt'}" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "runs" / "tiny").iterdir()] == ["version_0"]  # continued in place

    resumed = results_of(run_dir)
    uninterrupted = results_of(tmp_path / "uninterrupted" / "tiny" / "version_0")
    assert Path(resumed["checkpoint"]).name == Path(uninterrupted["checkpoint"]).name
    for split in ("train", "val", "test"):
        assert resumed["metrics"][split] == pytest.approx(uninterrupted["metrics"][split], abs=1e-6), split
    uninterrupted_last = tmp_path / "uninterrupted" / "tiny" / "version_0" / "checkpoints" / "last.ckpt"
    last_a = torch.load(uninterrupted_last, weights_only=True)
    last_b = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last_a["global_step"] == last_b["global_step"]
    for key, value in last_a["state_dict"].items():
        torch.testing.assert_close(last_b["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
