"""The fault matrix's config cases (issue 22): repeated YAML keys and YAML that does not parse, in
``--config`` files and grid files; values out of range; jsonargparse's refusals (a typo'd key, a wrong type,
a choice that is none); environment variables; grid files a hurried user writes. Each ends in one line naming
the key, the file and line, or the variable, with exit status 2 and no run folder left behind; or in a run
checked to have done what was asked."""

from __future__ import annotations

import json
from pathlib import Path

from .harness import Case, Outcome, Workspace, cli, environment
from .tiny import LINEAR, SYNTHETIC, folder_args, image_folder, results_ok, synthetic_args

# --- values out of range, and what jsonargparse refuses (class 5) -----------------------------------------


def refused_fit(key: str, value: str, says: str) -> Case:
    """``fit`` of the tiny run with ``--key value``: exit 2 naming the problem, and no run folder left
    behind."""

    def run(ws: Workspace) -> Outcome:
        runs = ws.root / "runs"
        return without_run_folder(runs, cli(["fit", *synthetic_args(runs), f"--{key}", value]))

    return Case(f"{key.rsplit('.', 1)[-1]} {value}", "config", f"fit --{key} {value}", run, expect="error",
                says=says)


def without_run_folder(runs: Path, outcome: Outcome) -> Outcome:
    """``outcome``, or a failure when a refused run left a ``version_*`` folder (it shifts the next run's
    number and looks like a run)."""
    left = sorted(runs.rglob("version_*")) if runs.exists() else []
    if outcome.exit_code == 2 and left:
        return Outcome(1, f"refused, but left the run folder {left[0]}")
    return outcome


REPO = Path(__file__).resolve().parents[2]
DATA, MODEL, TRAINER = "data.init_args.", "model.init_args.", "trainer."
# (key, value, what the one-line refusal must say)
OUT_OF_RANGE = [
    (DATA + "train_fraction", "0", "data.init_args.train_fraction"),
    (DATA + "train_fraction", "1.5", "data.init_args.train_fraction"),
    (DATA + "train_fraction", "-1", "data.init_args.train_fraction"),
    (DATA + "train_fraction", "500", "data.init_args.train_fraction"),  # of 32 training images
    (DATA + "image_size", "0", "data.init_args.image_size: 0 is out of range"),
    (DATA + "batch_size", "0", "data.init_args.batch_size: 0 is out of range"),
    (TRAINER + "max_epochs", "-5", r"trainer.max_epochs=-5: expected -1"),
    (TRAINER + "max_epochs", "0", "trainer.max_epochs=0: fit would train nothing"),
    (TRAINER + "max_epochs", "-1", "trainer.max_epochs=-1 .* fit would train until it is killed"),
    (TRAINER + "limit_train_batches", "0", "trainer.limit_train_batches=0: fit would train on no batch"),
    (TRAINER + "devices", "0", "trainer.devices=0"),
    ("intervals.confidence", "95", "intervals.confidence=95.0: expected a level between 0 and 1"),
    (DATA + "batch_sise", "8", "did you mean data.init_args.batch_size"),
    (TRAINER + "max_epochs", "ten", "trainer.max_epochs: expected an int"),
    (DATA + "kind", "multiclas", "data.init_args.kind: expected one of 'binary', 'multiclass', 'multilabel'"),
    (MODEL + "head_dropout", "1.5", "model.init_args: dropout probability has to be between 0 and 1"),
    ("seed_everything", "abc", "seed_everything: expected an int"),
    (MODEL + "backbone", "resnet5O", "unknown backbone 'resnet5O'.* closest: resnet50"),
    (MODEL + "lr", "0", "model.init_args.lr=0.0: expected a learning rate > 0"),
    (MODEL + "lr", "-0.1", "model.init_args.lr=-0.1: expected a learning rate > 0"),
    (MODEL + "weight_decay", "-1", "model.init_args.weight_decay=-1.0: expected 0"),
    (MODEL + "warmup_epochs", "-1", "model.init_args.warmup_epochs=-1.0: expected 0"),
    (MODEL + "backbone_lr_multiplier", "-1", "model.init_args.backbone_lr_multiplier=-1.0: expected 0"),
    # mmcv's 0-255 statistics: every image nearly one colour, trained and scored (exit 0)
    (MODEL + "normalisation", "{mean: [123.7, 116.3, 103.5], std: [58.4, 57.1, 57.4]}",
     "look like 0-255 values"),
    # launchers that run fit and test in processes of their own (the run hung after fit)
    (TRAINER + "strategy", "ddp_notebook", "trainer.strategy=ddp_notebook: it runs each fit and each test"),
    (TRAINER + "strategy", "ddp_spawn", "trainer.strategy=ddp_spawn: it runs each fit and each test"),
    (TRAINER + "accelerator", "tpu", "trainer: Requirement 'torch_xla"),  # was a bare ModuleNotFoundError
    # nodes that nothing starts: rank 0 waited 30 minutes for them, deaf to SIGTERM
    (TRAINER + "num_nodes", "2", "trainer.num_nodes=2: nothing starts the other nodes' ranks"),
    # Lightning's debugging settings: a results.json of one batch, or of half the test split (exit 0)
    (TRAINER + "fast_dev_run", "true", "trainer.fast_dev_run=True: Lightning's debugging run"),
    (TRAINER + "overfit_batches", "1", "trainer.overfit_batches=1: Lightning's overfitting check"),
    (TRAINER + "limit_test_batches", "0.5", "limit_test_batches=0.5: fit would score part of the test"),
    # validation that never runs: the last weights tested as "the best on validation"
    (TRAINER + "limit_val_batches", "0", "trainer.limit_val_batches=0: fit would never validate"),
    (TRAINER + "check_val_every_n_epoch", "5", "check_val_every_n_epoch=5 with trainer.max_epochs=1"),
]


def unknown_verb(ws: Workspace) -> Outcome:
    return cli(["fitt", *synthetic_args(ws.root / "runs")])


def carved_shares_leave_no_training(ws: Workspace) -> Outcome:
    """``val_fraction 0.5`` and ``test_fraction 0.5`` of an image folder: no image left to train on."""
    runs = ws.root / "runs"
    args = folder_args(image_folder(ws.root / "data"), runs, val_fraction=0.5, test_fraction=0.5)
    return without_run_folder(runs, cli(["fit", *args]))


def data_root_is_a_file(ws: Workspace) -> Outcome:
    """``--data.init_args.root`` naming the labels file instead of the folder."""
    (ws.root / "labels.csv").write_text("path,label\n")
    runs = ws.root / "runs"
    return without_run_folder(runs, cli(["fit", *folder_args(ws.root / "labels.csv", runs)]))


def fraction_as_the_whole_split(ws: Workspace) -> Outcome:
    """``train_fraction 32``, a count equal to the training split: every training image, as with 1.0."""
    runs = ws.root / "runs"
    run_dir = runs / "tiny" / "version_0"
    return cli(["fit", *synthetic_args(runs), "--data.init_args.train_fraction", "32"],
               check=lambda: results_ok(run_dir) and trained_on(run_dir) == 32)


def random_seeds_differ(ws: Workspace) -> Outcome:
    """``--seed_everything true`` twice: Lightning gave seed 0 both times (identical "random" repeats); each
    run must draw its own and record it."""
    runs = ws.root / "runs"
    first = cli(["fit", *synthetic_args(runs), "--seed_everything", "true"])
    if first.exit_code:
        return first
    return cli(["fit", *synthetic_args(runs), "--seed_everything", "true"], check=lambda: len({
        recorded(runs / "tiny" / f"version_{n}")["seed"] for n in (0, 1)}) == 2)


def time_limit_recorded(ws: Workspace) -> Outcome:
    """``--trainer.max_time`` that ends training before ``max_epochs``: scored, and results.json says what
    ended training after how many epochs (it said "finished" alone)."""
    runs = ws.root / "runs"
    run_dir = runs / "tiny" / "version_0"
    args = ["fit", *synthetic_args(runs), "--trainer.max_epochs", "500", "--trainer.max_time",
            "00:00:00:01"]
    return cli(args, check=lambda: results_ok(run_dir) and recorded(run_dir)["training"]["ended_by"]
               == "max_time" and recorded(run_dir)["training"]["epochs"] < 500)


def monitor_typo(callback: str):
    """A callback added to the config whose monitor is a metric the run does not log (``val_auroc`` for
    ``val/auroc``): a traceback from inside Lightning after the first epoch."""

    def run(ws: Workspace) -> Outcome:
        return cli(["fit", *synthetic_args(ws.root / "runs"),
                    f"--trainer.callbacks+=pytorch_lightning.callbacks.{callback}",
                    "--trainer.callbacks.monitor=val_auroc"])

    return run


def recorded(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def trained_on(run_dir: Path) -> int:
    """The training images results.json says the run used."""
    return recorded(run_dir)["data"]["num_samples"]["train"]


def half_precision_on_a_cpu(ws: Workspace) -> Outcome:
    """``--trainer.precision 16`` on a CPU: a run with finite results, or a one-line refusal."""
    runs = ws.root / "runs"
    args = ["fit", *synthetic_args(runs), "--trainer.precision", "16"]
    return without_run_folder(runs, cli(args, check=lambda: results_ok(runs / "tiny" / "version_0")))


def ddp_config_on_a_cpu(ws: Workspace) -> Outcome:
    """``configs/trainer/ddp.yaml`` on a CPU as its own comment once said (2 devices, 32-true): its GPU-only
    SyncBatchNorm ended in a traceback as DDP wrapped the model."""
    runs = ws.root / "runs"
    args = ["fit", *synthetic_args(runs), "--config", str(REPO / "configs" / "trainer" / "ddp.yaml"),
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.precision", "32-true"]
    return without_run_folder(runs, cli(args))


def gpu_asked_for(ws: Workspace) -> Outcome:
    """``--trainer.accelerator gpu``: refused in one line where there is none (and a checked run where there
    is)."""
    runs = ws.root / "runs"
    args = ["fit", *synthetic_args(runs), "--trainer.accelerator", "gpu"]
    return without_run_folder(runs, cli(args, check=lambda: results_ok(runs / "tiny" / "version_0")))


# --- environment variables ----------------------------------------------------------------------------------


def workers_many(ws: Workspace) -> Outcome:
    """``MEDTRANSFER_NUM_WORKERS=many`` for a run that loads images from files."""
    runs = ws.root / "runs"
    with environment(MEDTRANSFER_NUM_WORKERS="many"):
        return without_run_folder(runs, cli(["fit", *folder_args(image_folder(ws.root / "data"), runs)]))


def traceback_maybe(ws: Workspace) -> Outcome:
    """``MEDTRANSFER_TRACEBACK=maybe`` while a run is refused: the refusal is still what the user reads."""
    runs = ws.root / "runs"
    with environment(MEDTRANSFER_TRACEBACK="maybe"):
        return without_run_folder(runs, cli(["fit", *synthetic_args(runs), "--trainer.max_epochs", "0"]))


def log_level_loud(ws: Workspace) -> Outcome:
    runs = ws.root / "runs"
    with environment(MEDTRANSFER_LOG_LEVEL="LOUD"):
        return without_run_folder(runs, cli(["fit", *synthetic_args(runs)]))


# --- YAML: repeated keys (class 4) and YAML that does not parse ---------------------------------------------


def config_file_case(name: str, text: str, says: str) -> Case:
    """``fit`` of the tiny run with one more ``--config`` file holding ``text``: refused in one line."""

    def run(ws: Workspace) -> Outcome:
        config = ws.root / "extra.yaml"
        config.write_text(text)
        runs = ws.root / "runs"
        return without_run_folder(runs, cli(["fit", *synthetic_args(runs), "--config", str(config)]))

    return Case(name, "yaml", f"--config file: {name}", run, expect="error", says=says)


CONFIG_FILES = [
    config_file_case("a top-level key given twice", "trainer:\n  max_epochs: 1\ntrainer:\n  max_epochs: 3\n",
                     r"extra.yaml line 3: key 'trainer' is given twice \(lines 1 and 3\) at the top level"),
    config_file_case("model.init_args.lr given twice", "model:\n  init_args:\n    lr: 0.1\n    lr: 0.001\n",
                     r"key 'lr' is given twice \(lines 3 and 4\) under 'model.init_args'"),
    config_file_case("a tab in a config file", "trainer:\n\tmax_epochs: 1\n",
                     r"extra.yaml line 2, column 1: not valid YAML: .*YAML indents with spaces, never tabs"),
    config_file_case("an unclosed bracket", "trainer: {max_epochs: 1\n",
                     r"extra.yaml line 2, column 1: not valid YAML: expected ',' or '}'"),
    config_file_case("an empty config file", "", "a --config file holds no settings"),
]


# --- grid files ---------------------------------------------------------------------------------------------

GRID = f"""name: g
output_dir: OUT
overrides:
  trainer.accelerator: cpu
  data.init_args.num_train: 32
axes:
  dataset:
    synthetic: {SYNTHETIC}
  seed: [0]
grids:
  - protocol:
      linear:
        config: {LINEAR}
    backbone:
      resnet: test_resnet
"""


def grid_case(name: str, text: str, says: str, group: str = "grid", expect: str = "error") -> Case:
    """``benchmark --dry_run`` of a grid file holding ``text`` (``OUT``: the case's output folder)."""

    def run(ws: Workspace) -> Outcome:
        grid = ws.root / "grid.yaml"
        grid.write_text(text.replace("OUT", str(ws.root / "out")))
        return cli(["benchmark", "--config", str(grid), "--dry_run"])

    return Case(name, group, f"grid file: {name}", run, expect=expect, says=says)


GRIDS = [
    grid_case("a backbone label given twice", GRID + "      resnet: test_convnext\n",
              r"line 16: key 'resnet' is given twice \(lines 15 and 16\) under 'grids\[0\].backbone'",
              "yaml"),
    grid_case("a tab in a grid file", GRID.replace("  seed: [0]", "\tseed: [0]"),
              r"is not valid YAML: line 9, column 1: found character .*YAML indents with spaces", "yaml"),
    grid_case("an unknown axis 'seeds'", GRID.replace("  seed: [0]", "  seeds: [0]"),
              r"axes.seeds: unknown axis"),
    grid_case("two labels, one run id",
              GRID.replace("resnet:", "res_net:") + "      res/net: test_convnext\n",
              r"two runs get the id synthetic-linear-res_net-s0 .*backbone='res/net'"),
    grid_case("a sub-grid given twice", GRID + GRID[GRID.index("  - protocol"):],
              r"two runs get the id synthetic-linear-resnet-s0"),
    grid_case("a seed listed twice", GRID.replace("seed: [0]", "seed: [0, 0]"),
              r"axes.seed: labels repeat: \['0', '0'\]"),
    grid_case("a config piece that does not exist",
              GRID.replace(str(LINEAR), "configs/model/linear_prob.yaml"),
              r"config piece configs/model/linear_prob.yaml does not exist"),
    grid_case("a typo'd override key", GRID.replace("data.init_args.num_train", "data.init_args.num_trian"),
              r"the grid's overrides is not a valid `medtransfer fit` config: .*num_trian"),
    grid_case("an empty grid file", "", r"expected a mapping with keys name"),
    grid_case("seed_everything true in a grid", GRID.replace("  seed: [0]\n", "").replace(
        "overrides:\n", "overrides:\n  seed_everything: true\n"), r"seed_everything=true: each attempt"),
    grid_case("fast_dev_run in a grid's overrides", GRID.replace(
        "overrides:\n", "overrides:\n  trainer.fast_dev_run: true\n"), r"trainer.fast_dev_run=True"),
]


def missing_grid(ws: Workspace) -> Outcome:
    return cli(["benchmark", "--config", str(ws.root / "grid.yaml")])


def cases() -> list[Case]:
    return [
        *(refused_fit(key, value, says) for key, value, says in OUT_OF_RANGE),
        Case("unknown verb 'fitt'", "config", "medtransfer fitt ...", unknown_verb, expect="error",
             says="unknown verb 'fitt'; did you mean fit"),
        Case("val and test shares of 0.5 each", "config", "an image folder carved to nothing for training",
             carved_shares_leave_no_training, expect="error", says="leaves no training images"),
        Case("data root that is a file", "config", "--data.init_args.root labels.csv", data_root_is_a_file,
             expect="error", says="labels.csv"),
        Case("train_fraction 32 = the training split", "config", "a count equal to the split: every image",
             fraction_as_the_whole_split, expect="success"),
        Case("seed_everything true, twice", "config", "two runs that each draw a seed", random_seeds_differ,
             expect="success"),
        Case("max_time before max_epochs", "config", "training ended by a time limit", time_limit_recorded,
             expect="success"),
        Case("EarlyStopping on val_auroc", "config", "a callback's monitor that is no logged metric",
             monitor_typo("EarlyStopping"), expect="error",
             says="trainer.callbacks: Early stopping conditioned on metric `val_auroc`.*`val/auroc`"),
        Case("ModelCheckpoint on val_auroc", "config", "a second checkpoint callback's monitor, misspelt",
             monitor_typo("ModelCheckpoint"), expect="error",
             says=r"trainer.callbacks: `ModelCheckpoint\(monitor='val_auroc'\)` could not find .*val/auroc"),
        Case("precision 16 on a CPU", "config", "--trainer.precision 16 without a GPU",
             half_precision_on_a_cpu),
        Case("accelerator gpu without one", "config", "--trainer.accelerator gpu", gpu_asked_for,
             says="gpu"),
        Case("ddp.yaml on a CPU", "config", "configs/trainer/ddp.yaml with accelerator cpu, 2 devices",
             ddp_config_on_a_cpu, expect="error", says="trainer.sync_batchnorm=true: torch's SyncBatchNorm"),
        Case("MEDTRANSFER_NUM_WORKERS=many", "env", "a worker count that is no number", workers_many,
             expect="error", says="MEDTRANSFER_NUM_WORKERS='many'"),
        Case("MEDTRANSFER_TRACEBACK=maybe", "env", "an unreadable switch while a run is refused",
             traceback_maybe, expect="error", says="trainer.max_epochs=0"),
        Case("MEDTRANSFER_LOG_LEVEL=LOUD", "env", "a log level that is none", log_level_loud, expect="error",
             says="MEDTRANSFER_LOG_LEVEL='LOUD'"),
        *CONFIG_FILES,
        *GRIDS,
        Case("a grid file that does not exist", "grid", "benchmark --config missing.yaml", missing_grid,
             expect="error", says="grid file .*grid.yaml does not exist"),
    ]
