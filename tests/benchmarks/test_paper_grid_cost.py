"""The paper grid's cost (benchmarks/paper_grid_cost.py): its arithmetic on tiny made-up constants against a
computation by hand, the grid it prices against the configs, and the GPU constants it reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .script_loading import load_script

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cost():
    return load_script("paper_grid_cost.py", "paper_grid_cost")


def tiny(cost):
    """One dataset, a convolutional and a transformer backbone fused by DVME, 2 fractions x 2 seeds."""
    data = cost.Dataset("D", train=100, val=10, test=20, outputs=2, decision=True, source="made up")
    backbones = (cost.GridBackbone("a", "a.weights", "conv", 4),
                 cost.GridBackbone("b", "b.weights", "vit", 2))
    protocol = cost.Protocol(fractions=(0.1, 1.0), seeds=2, finetune_epochs=3, dvme_epochs=5,
                             probe_evaluations=7)
    costs = cost.Costs(forward={"conv": 1.0, "vit": 2.0}, train={"conv": 3.0, "vit": 5.0}, probe_value=0.5,
                       head_train=0.25, head_forward=0.125)
    return cost.grid_cost(costs, [data], backbones, ("a", "b"), protocol)


def test_the_grid_costs_what_a_hand_computation_gives(cost):
    lines = {line.stage: line for line in tiny(cost)}
    # fractions select 10 and 100 training rows; after fit: validation twice (best checkpoint, decision
    # thresholds) and the test split: 10 + 10 + 20 = 40 images
    # extraction: 130 images through each backbone once: 130 x 1 s + 130 x 2 s
    extraction = lines["extraction"]
    assert (extraction.seconds, extraction.passes, extraction.runs) == (390, 260, 0)
    # probe: 2 seeds x 7 evaluations x rows x dim x 2 outputs x 0.5 s: (56 + 28) x (10 + 100)
    assert lines["linear probe (exact solver)"].seconds == pytest.approx(9240)
    assert lines["linear probe (exact solver)"].runs == 8
    # finetune, per fraction and 2 seeds: conv 2 x (3 x (3 rows + 10 x 1) + 40 x 1) = 18 rows + 140,
    # vit 2 x (3 x (5 rows + 10 x 2) + 40 x 2) = 30 rows + 280; summed over rows 10 and 100
    finetune = lines["finetune"]
    assert finetune.seconds == pytest.approx((18 * 110 + 280) + (30 * 110 + 560)) == 6120
    assert finetune.passes == pytest.approx(2 * (6 * 110 + 2 * 140)) and finetune.runs == 8
    # DVME frozen: 4 head forwards per evaluated row (logits, base, one per backbone):
    # 2 x (5 x (0.25 rows + 10 x 4 x 0.125) + 40 x 4 x 0.125) = 2.5 rows + 90
    assert lines["DVME frozen"].seconds == pytest.approx(2.5 * 110 + 180) == 455
    assert lines["DVME frozen"].runs == 4 and lines["DVME frozen"].passes == 0
    # end to end: both backbones (3 + 5 s training, 1 + 2 s forward) plus the head:
    # 2 x (5 x (8 rows + 10 x 3) + 40 x 3 + 1.25 rows + 45) = 82.5 rows + 630
    end_to_end = lines["DVME end to end"]
    assert end_to_end.seconds == pytest.approx(82.5 * 110 + 1260) == 10335
    assert end_to_end.passes == pytest.approx(2 * 2 * (5 * 110 + 2 * 90))
    total = cost.total(list(lines.values()))
    assert total.seconds == pytest.approx(390 + 9240 + 6120 + 455 + 10335) and total.runs == 24


def test_a_multiclass_task_has_no_decision_pass(cost):
    data = cost.Dataset("M", train=10, val=4, test=6, outputs=5, decision=False, source="made up")
    backbone = (cost.GridBackbone("a", "a.weights", "conv", 1),)
    costs = cost.Costs({"conv": 1.0}, {"conv": 0.0}, 0.0, 0.0, 0.0)
    protocol = cost.Protocol(fractions=(1.0,), seeds=1, finetune_epochs=2, dvme_epochs=1, probe_evaluations=1)
    lines = {x.stage: x for x in cost.grid_cost(costs, [data], backbone, ("a",), protocol)}
    assert lines["finetune"].seconds == 2 * 4 + 4 + 6  # validation each epoch, then best checkpoint and test


def test_the_priced_grid_is_the_configs_paper_grid(cost):
    costs = cost.Costs({"resnet50": 1.0, "vit_small_patch16_224": 1.0}, {"resnet50": 1.0,
                       "vit_small_patch16_224": 1.0}, 1e-9, 1e-3, 1e-3)
    lines = cost.grid_cost(costs, [cost.DATASETS[name] for name in cost.DEFAULT_DATASETS])
    assert cost.total(lines).runs == 360  # configs/benchmark/paper.yaml: "= 360 runs"
    paper = yaml.safe_load((REPO / "configs/benchmark/paper.yaml").read_text())
    protocol = cost.Protocol()
    assert tuple(paper["axes"]["fraction"].values()) == protocol.fractions
    assert len(paper["axes"]["seed"]) == protocol.seeds
    backbones = paper["grids"][0]["backbone"]
    assert {b.label: b.weights for b in cost.PAPER_BACKBONES} == backbones
    assert [backbones[label] for label in cost.DVME_FUSED] == paper["grids"][1]["backbone"]["dvme"]
    epochs = yaml.safe_load((REPO / "configs/trainer/gpu.yaml").read_text())["trainer"]["max_epochs"]
    dvme = yaml.safe_load((REPO / "configs/model/dvme.yaml").read_text())["trainer"]["max_epochs"]
    assert (protocol.finetune_epochs, protocol.dvme_epochs) == (epochs, dvme)
    assert cost.fraction_rows(262_144, 0.01) == 2621 and cost.fraction_rows(10, 0.01) == 1


def test_gpu_costs_come_from_flops_or_from_measured_rates(cost):
    measured = cost.Measured("CPU", "32-true", {"conv": 1.0}, {"conv": 1.0}, {"conv": 2e12}, {"conv": 6e12},
                             probe_value_s=0.0, head_train_per_s=1.0, head_forward_per_s=1.0,
                             head_train_flops=5e10, head_forward_flops=1e10)
    gpu = cost.gpu_costs(measured, peak_tflops=100, fp32_tflops=10, utilisation=0.5)
    assert gpu.forward["conv"] == pytest.approx(2e12 / 50e12)
    assert gpu.train["conv"] == pytest.approx(6e12 / 50e12)
    assert gpu.probe_value == pytest.approx(4 / 5e12)  # two multiply-adds per row x dimension x output
    assert (gpu.head_train, gpu.head_forward) == (pytest.approx(1e-3), pytest.approx(2e-4))
    rated = cost.gpu_costs(measured, 100, 10, 0.5, {"conv": {"train": 10.0, "forward": 40.0}})
    assert (rated.train["conv"], rated.forward["conv"]) == (0.1, 0.025)


def test_gpu_check_output_is_read(cost):
    log = """== gpu_check  ==
commit abc1234; outputs in /tmp/x; load average 0.1 0.2 0.3
GPU: NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15
== 2. medtransfer fit: 2-epoch Finetune, resnet50 at 224 px, bf16-mixed, channels_last, 3 runs ==
  run 1: TrainingSpeed: 2901.0 training images/s per process over 14336 images
  training images/s: median 2950.5 [2901.0, 3001.2]; wall time of the whole command: median 60.1 s
  12288 images embedded and probed per run: median 812.3 [800.1, 830.0] images/s end to end
"""
    assert cost.read_gpu_check(log) == {"gpu": "NVIDIA H100 80GB HBM3", "train": 2950.5,
                                        "probe_end_to_end": 812.3}
    assert cost.read_gpu_check("  training images/s: 1200.0; wall time")["train"] == 1200.0  # one run
    with pytest.raises(SystemExit, match="training images/s"):
        cost.read_gpu_check("GPU: something\n")
