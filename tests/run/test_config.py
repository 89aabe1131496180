"""Parsing a run's arguments: a mistake in a config value is one line naming the key, what was given and what
would do, with exit status 2 and no usage text; trainer values that would train nothing are refused; an
ad-hoc run is named after what it runs."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medtransfer.cli import main
from medtransfer.lightning_modules import Finetune
from medtransfer.run.config import ad_hoc_name, parse_run
from medtransfer.runtime.checkpoints import CheckpointFileError
from tests.export.checkpoints import tiny_data, train_checkpoint

REPO = Path(__file__).resolve().parents[2]


def error_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as ended:
        main(argv)
    assert ended.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 2 and "usage:" not in "\n".join(err) and "Traceback" not in "\n".join(err), err
    return err[-1]


@pytest.mark.parametrize(("extra", "expected"), [
    (["--data.init_args.batch_sise", "3"], "data.init_args.batch_sise: SyntheticMedical takes no option "
                                           "'batch_sise'; did you mean data.init_args.batch_size?"),
    (["--trainer.max_epochs", "abc"], "trainer.max_epochs: expected an int (or null), got 'abc'"),
    (["--model.init_args.lr", "fast"], "model.init_args.lr: expected a float"),
    (["--traner.max_epochs", "1"], "unknown option --traner.max_epochs; did you mean --trainer.max_epochs?"),
    (["--data", "Nope"], "data: 'Nope' names no class"),
    (["--config", "/nowhere/missing.yaml"], "--config: no such file /nowhere/missing.yaml"),
    (["--trainer.max_epochs", "-5"], "trainer.max_epochs=-5: expected -1 (no limit) or a number of epochs"),
    (["--trainer.max_epochs", "0"], "trainer.max_epochs=0: fit would train nothing"),
    (["--trainer.max_epochs", "-1"], "trainer.max_epochs=-1 (no limit) with no trainer.max_steps, max_time "
                                     "or EarlyStopping callback: fit would train until it is killed"),
    (["--trainer.limit_train_batches", "0"], "trainer.limit_train_batches=0: fit would train on no batch"),
    (["--trainer.limit_val_batches", "1.5"], "trainer.limit_val_batches=1.5: expected a fraction"),
    (["--trainer.devices", "0"], "trainer.devices=0"),
    (["--trainer.precision", "fp99"], "trainer.precision: expected one of"),
    (["--intervals.confidence", "95"], "intervals.confidence=95.0: expected a level between 0 and 1"),
    (["--data.init_args.kind", "multiclas"], "data.init_args.kind: expected one of 'binary', 'multiclass', "
                                             "'multilabel', got 'multiclas'"),
    (["--model.init_args.optimizer", "adam"], "model.init_args.optimizer: expected one of 'adamw', 'sgd', "
                                              "got 'adam'"),
    (["--model.init_args.scheduler", "step"], "model.init_args.scheduler: expected one of 'cosine', "
                                              "'constant', 'multistep', got 'step'"),
    (["--model.init_args.stem", "smal"], "model.init_args.stem: expected one of 'imagenet', 'small', "
                                         "got 'smal'"),
    (["--data.init_args.augmentation", "chest-xray"],  # an optional choice: a union of literals and None
     "data.init_args.augmentation: expected one of 'none', 'natural', 'histology', 'fundus', 'chest_xray', "
     "got 'chest-xray'"),
    (["--model.init_args.head_dropout", "1.5"], "model.init_args: dropout probability has to be between 0 "
                                                "and 1"),
    (["--model.init_args.lr", "0"], "model.init_args.lr=0.0: expected a learning rate > 0 (0 would train "
                                    "nothing"),
    (["--model.init_args.lr", "-0.1"], "model.init_args.lr=-0.1: expected a learning rate > 0"),
    (["--model.init_args.weight_decay", "-1"], "model.init_args.weight_decay=-1.0: expected 0 (none) or "
                                               "more"),
    (["--model.init_args.warmup_epochs", "-1"], "model.init_args.warmup_epochs=-1.0: expected 0 (no "
                                                "warm-up)"),
    (["--model.init_args.backbone_lr_multiplier", "-1"], "backbone_lr_multiplier=-1.0: expected 0 (the "
                                                         "backbone does not learn) or more"),
    # launchers that run fit and test in processes of their own: the run hung after fit
    (["--trainer.strategy", "ddp_notebook"], "trainer.strategy=ddp_notebook: it runs each fit and each test "
                                             "in processes it starts and ends"),
    (["--trainer.strategy", "ddp_spawn_find_unused_parameters_true"], "Use strategy ddp"),
    (["--config", str(REPO / "configs" / "trainer" / "ddp.yaml"), "--trainer.accelerator", "cpu",
      "--trainer.strategy.init_args.start_method", "fork", "--trainer.sync_batchnorm", "false"],
     "trainer.strategy=pytorch_lightning.strategies.DDPStrategy: it runs each fit and each test"),
    # the documented CPU use of ddp.yaml without its GPU-only SyncBatchNorm: a traceback wrapping the model
    (["--config", str(REPO / "configs" / "trainer" / "ddp.yaml"), "--trainer.accelerator", "cpu",
      "--trainer.devices", "2", "--trainer.precision", "32-true"],
     "trainer.sync_batchnorm=true: torch's SyncBatchNorm runs on GPUs only and this run is on the CPU"),
    (["--trainer.accelerator", "tpu"], "trainer: Requirement 'torch_xla"),  # not a bare ModuleNotFoundError
])
def test_a_bad_value_is_one_line_naming_the_key(tiny_cli, tmp_path, capsys, extra, expected):
    runs = tmp_path / "runs"
    line = error_of(["fit", *tiny_cli(runs), *extra], capsys)
    assert line.startswith("medtransfer: error: ") and expected in line, line
    assert not runs.exists()


def test_a_repeated_key_in_a_config_file_names_the_key_and_lines(tiny_cli, tmp_path, capsys):
    config = tmp_path / "repeated.yaml"
    config.write_text("trainer:\n  max_epochs: 1\n  max_epochs: 3\n")
    line = error_of(["fit", *tiny_cli(tmp_path / "runs"), "--config", str(config)], capsys)
    assert "max_epochs" in line and "2" in line and "3" in line


@pytest.mark.parametrize(("text", "expected"), [
    ("trainer:\n\tmax_epochs: 1\n", r"broken.yaml line 2, column 1: not valid YAML: found character "
                                   r"'\\t' that cannot start any token .*; YAML indents with spaces, never "
                                   "tabs"),
    ("model: [unclosed\n", r"broken.yaml line 2, column 1: not valid YAML: expected ',' or '\]'"),
    ("", r"a --config file holds no settings \(it reads as ''"),
], ids=["tab", "unclosed bracket", "empty"])
def test_a_config_file_that_is_no_yaml_mapping_is_one_line(tiny_cli, tmp_path, capsys, text, expected):
    config = tmp_path / "broken.yaml"
    config.write_text(text)
    line = error_of(["fit", *tiny_cli(tmp_path / "runs"), "--config", str(config)], capsys)
    assert re.search(expected, line), line


def test_unknown_verbs_help_and_no_arguments(capsys):
    assert "did you mean fit?" in error_of(["fti"], capsys)
    with pytest.raises(SystemExit) as ended:
        main(["--help"])
    assert ended.value.code == 0 and "predict" in capsys.readouterr().out
    with pytest.raises(SystemExit) as ended:
        main([])
    assert ended.value.code == 2


@pytest.mark.parametrize(("argv", "not_imported"), [
    (["weights", "--help"], ("torch", "pytorch_lightning", "timm")),
    (["benchmark", "--help"], ("torch", "pytorch_lightning")),
    (["weights", "list"], ("pytorch_lightning.cli",)),
    (["export", "--help"], ("pytorch_lightning.cli",)),
])
def test_light_verbs_import_only_what_they_need(argv, not_imported):
    """The cold start of the light verbs: what they import (their CPU time is measured by
    benchmarks/cold_start.py); Lightning's CLI parser only for the verbs that parse a run's config."""
    probe = (f"import sys\nfrom medtransfer.cli import main\ntry:\n    main({argv!r})\n"
             f"except SystemExit:\n    pass\nprint(sorted(m for m in {not_imported!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_ad_hoc_runs_are_named_after_their_configs_or_classes(tiny_cli, tmp_path):
    data_config, model_config = REPO / "configs" / "data" / "synthetic.yaml", REPO / "configs" / "model" / \
        "finetune.yaml"
    parsed = parse_run("fit", ["--config", str(data_config), "--config", str(model_config)])
    assert parsed.config.trainer.logger.init_args.name == "synthetic-finetune"
    parsed = parse_run("test", ["--data", "medtransfer.datamodules.SyntheticMedical",
                                "--model", "medtransfer.lightning_modules.Finetune"])
    assert ad_hoc_name(parsed.config, "test") == "syntheticmedical-finetune-test"
    named = parse_run("fit", tiny_cli(tmp_path / "runs"))  # a config that names its logger keeps the name
    assert named.config.trainer.logger.init_args.name == "tiny"


def test_a_checkpoint_of_another_model_class_than_the_config_names_is_refused(tmp_path):
    """The checkpoint's class used to replace the one the config names, without a word."""
    data = tiny_data("binary")
    checkpoint = train_checkpoint(tmp_path / "model", Finetune(backbone="test_resnet", task=data.task), data)
    synthetic = ["--data", "medtransfer.datamodules.SyntheticMedical", "--ckpt_path", str(checkpoint)]
    assert parse_run("test", synthetic).config.model.class_path.endswith(".Finetune")  # no model named
    with pytest.raises(CheckpointFileError, match=r"holds a Finetune model, but the config names LinearProbe "
                                                  r"\(medtransfer.lightning_modules.LinearProbe\)"):
        parse_run("test", ["--model", "medtransfer.lightning_modules.LinearProbe", *synthetic])


def test_model_settings_the_checkpoint_replaces_are_said(tmp_path, caplog):
    """``--model.init_args.backbone resnet18`` beside a test_resnet checkpoint scored the test_resnet, and
    only results.json told; settings left at their defaults, or equal, are not listed."""
    data = tiny_data("binary")
    checkpoint = train_checkpoint(tmp_path / "model", Finetune(backbone="test_resnet", task=data.task), data)
    synthetic = ["--data", "medtransfer.datamodules.SyntheticMedical", "--ckpt_path", str(checkpoint),
                 "--model", "medtransfer.lightning_modules.Finetune"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medtransfer.run.config"):
        parse_run("test", [*synthetic, "--model.init_args.backbone", "test_resnet"])
        assert not caplog.records
        parsed = parse_run("test", [*synthetic, "--model.init_args.backbone", "resnet18",
                                    "--model.init_args.head_dropout", "0.5"])
    assert parsed.config.model.init_args.backbone == "test_resnet"
    (record,) = [r for r in caplog.records if r.name == "medtransfer.run.config"]
    assert record.getMessage() == (
        f"--ckpt_path {checkpoint}: the checkpoint's model settings replace the config's: backbone "
        '"test_resnet" (the config gives "resnet18"); head_dropout 0.0 (the config gives 0.5)')


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto picks the GPU, where SyncBatchNorm runs")
def test_sync_batchnorm_on_a_cpu_picked_by_auto_is_refused_when_the_trainer_is_built(tiny_cli, tmp_path,
                                                                                     capsys):
    runs = tmp_path / "runs"
    line = error_of(["fit", *tiny_cli(runs), "--trainer.accelerator", "auto", "--trainer.strategy", "ddp",
                     "--trainer.sync_batchnorm", "true"], capsys)
    assert "trainer.sync_batchnorm=true: torch's SyncBatchNorm runs on GPUs only" in line
    assert not runs.exists()
