"""The fault matrix's run cases (issue 22): training that diverges stops at once and is recorded as failed,
never scored or ranked; a finished run is never written over; checkpoints a hurried user hands over (a folder,
a results.json, another model's); and SIGINT/SIGTERM during fit, test, predict and extraction end the
command with 130/143 and one line saying how to go on, leaving every file whole."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from .harness import Case, Outcome, Workspace, call, cli, driver
from .images import plain_png
from .tiny import (
    QUICKSTART,
    expect_ok,
    fitted,
    linear_args,
    results_ok,
    stores_ok,
    synthetic_args,
    template,
    trainer_args,
    unfinished,
)

DIVERGING = ["--model.init_args.lr", "1e10"]

# --- diverged training (class 2) ----------------------------------------------------------------------------


def diverged_fit(ws: Workspace) -> Outcome:
    """``fit`` at a learning rate of 1e10: exit 2 at once, and a results.json that says the run failed, with
    no test metrics, no test predictions and no "best" checkpoint of NaN weights."""
    runs = ws.root / "runs"
    outcome = cli(["fit", *synthetic_args(runs, max_epochs=3), *DIVERGING])
    run_dir = runs / "tiny" / "version_0"
    if outcome.exit_code == 2 and not recorded_as_failed(run_dir):
        return Outcome(1, f"stopped, but {run_dir} does not record a failed run: {outcome.message}")
    return outcome


def recorded_as_failed(run_dir: Path) -> bool:
    results = json.loads((run_dir / "results.json").read_text())
    kept = list(run_dir.rglob("best-*.ckpt")) + list(run_dir.glob("test_predictions.csv"))
    return (results.get("status") == "failed" and results["failure"]["kind"] == "diverged"
            and "test" not in results["metrics"] and not kept)


def diverged_run_in_a_report(ws: Workspace) -> Outcome:
    """``benchmark --report`` over a finished run and a diverged one: the diverged run is listed as failed,
    its cell says so and is never bold, and results.csv holds the finished run only."""
    fitted(ws)
    runs = ws.root / "runs"
    diverged = cli(["fit", *synthetic_args(runs), *DIVERGING, "--trainer.logger.init_args.name", "diverged"])
    if diverged.exit_code != 2:
        return Outcome(1, f"expected the diverged fit to stop with exit 2, got {diverged.did}")
    ws.protect(runs)
    report = runs / "report"
    return cli(["benchmark", "--report", str(runs), "--out", str(report), "--resamples", "20"],
               check=lambda: failed_apart(report))


def failed_apart(report: Path) -> bool:
    summary = (report / "summary.md").read_text()
    with open(report / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    failed_cell = next(line for line in summary.splitlines() if "failed (1 of 1 runs)" in line)
    return (len(rows) == 1 and "## Failed runs" in summary and "| diverged |" in summary
            and "**" not in failed_cell)


# --- a finished run is never written over (class 3) ---------------------------------------------------------


def onto_finished(verb: str, extra: list[str]):
    """``verb`` of the tiny run with ``extra`` arguments, aimed at the folder of the finished tiny run."""

    def run(ws: Workspace) -> Outcome:
        run_dir = fitted(ws)
        runs = ws.root / "runs"
        ws.protect(runs)
        checkpoint = ["--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt")] if verb != "fit" else []
        return cli([verb, *synthetic_args(runs), *checkpoint, *extra])

    return run


PINNED = ["--trainer.logger.init_args.version", "0"]


def predict_twice_pinned(ws: Workspace) -> Outcome:
    """``predict`` with a pinned version, twice: the second would write over the first predictions.csv."""
    run_dir = fitted(ws)
    images = new_images(ws.root / "new", 3)
    args = predict_args(run_dir, images, ws.root / "predicted") + PINNED
    first = cli(args)
    if first.exit_code:
        return first
    ws.protect(ws.root / "predicted")
    return cli(args)


def new_images(folder: Path, count: int) -> Path:
    """``folder`` with ``count`` PNGs ``scan0.png``, ``scan1.png``, ... to score."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        plain_png(folder / f"scan{i}.png")
    return folder


def predict_args(run_dir: Path, images: Path, runs: Path) -> list[str]:
    """``medtransfer predict`` of the images under ``images`` with the tiny run's last checkpoint."""
    return ["predict", "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), "--data", "NewImages",
            "--data.init_args.root", str(images), *trainer_args(runs, name="new")]


def no_logger_into_a_finished_folder(ws: Workspace) -> Outcome:
    """``fit`` without a logger writes into ``trainer.default_root_dir``: one that holds a finished run's
    results.json is refused."""
    folder = ws.root / "plain"
    folder.mkdir()
    (folder / "results.json").write_text('{"metrics": {"test": {"auroc": 0.91}}}\n')
    ws.protect(folder)
    args = synthetic_args(ws.root / "runs") + ["--trainer.logger", "false", "--trainer.default_root_dir",
                                               str(folder)]
    return cli(["fit", *args])


# --- checkpoints a hurried user hands over ------------------------------------------------------------------


def checkpoint_path_case(name: str, path_of, expect: str, says: str) -> Case:
    """``test --ckpt_path <path_of(run folder)>`` beside the finished tiny run."""

    def run(ws: Workspace) -> Outcome:
        run_dir = fitted(ws)
        runs = ws.root / "runs"
        ws.protect(runs)
        return cli(["test", *synthetic_args(runs), "--ckpt_path", str(path_of(run_dir))])

    return Case(name, "checkpoint", f"test --ckpt_path {name}", run, expect=expect, says=says)


def tested_on_other_images(extra: list[str]) -> Callable[[Workspace], Outcome]:
    """``test`` of the tiny run's last checkpoint (trained at 32 px, natural preset) with ``extra`` data
    settings: its AUROC used to move without a word (0.48 at 32 px, 0.30 at 64 px)."""

    def run(ws: Workspace) -> Outcome:
        run_dir = fitted(ws)
        runs = ws.root / "runs"
        ws.protect(runs)
        return cli(["test", *synthetic_args(runs), "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"),
                    *extra])

    return run


def linear_fitted(ws: Workspace) -> Path:
    """A finished LinearProbe run (exact solver on feature stores) in ``ws``."""
    source = template("linear", ws.root.parent,
                      lambda f: expect_ok(cli(["fit", *linear_args(f / "runs", f / "features")])))
    shutil.copytree(source / "runs", ws.root / "linear")
    return ws.root / "linear" / "tiny" / "version_0"


def linear_probe_tested_as_finetune(ws: Workspace) -> Outcome:
    """A LinearProbe's checkpoint with the quickstart config, whose model is Finetune."""
    run_dir = linear_fitted(ws)
    ws.protect(ws.root / "linear")
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    return cli(["test", *synthetic_args(ws.root / "runs"), "--ckpt_path", str(checkpoint)])


def continued_on_a_smaller_fraction(ws: Workspace) -> Outcome:
    """``fit --ckpt_path last`` of a stopped run with ``train_fraction 0.5``: it went on training on half the
    images, one model of two subsets recorded as the second."""
    unfinished(ws)
    runs = ws.root / "runs"
    ws.protect(runs)
    return cli(["fit", *synthetic_args(runs, max_epochs=2), "--data.init_args.train_fraction", "0.5",
                "--ckpt_path", "last"])


def continue_without_a_run(ws: Workspace) -> Outcome:
    """``fit --ckpt_path last`` before any run: a fresh run (as the first attempt of a requeued job is)."""
    runs = ws.root / "runs"
    return cli(["fit", *synthetic_args(runs), "--ckpt_path", "last"],
               check=lambda: results_ok(runs / "tiny" / "version_0"))


# --- SIGINT and SIGTERM (class 7) ---------------------------------------------------------------------------


def stopped_fit(signal_name: str):
    """The signal once the first epoch's last.ckpt is written: 130/143 saying how to continue, no
    results.json or temporary file, a last.ckpt that loads; then ``--ckpt_path last`` finishes the run."""

    def run(ws: Workspace) -> Outcome:
        runs = ws.root / "runs"
        args = synthetic_args(runs, max_epochs=2)
        stop = driver(["replace:last.ckpt", "1", signal_name, "--", "fit", *args])
        run_dir = runs / "tiny" / "version_0"
        problem = left_partial(run_dir) or ("" if "--ckpt_path last" in stop.message else "no way on said")
        if problem:
            return Outcome(1, f"{stop.did}: {problem}")
        continued = cli(["fit", *args, "--ckpt_path", "last"], check=lambda: results_ok(run_dir))
        return stop if continued.exit_code == 0 and continued.data_ok else Outcome(1, f"then {continued.did}")

    return run


def left_partial(run_dir: Path) -> str:
    """What a stopped fit left that it must not: a temporary file, a results.json, a last.ckpt that does not
    load ('' when nothing)."""
    temporary = [p.name for p in run_dir.rglob("*.tmp")]
    if temporary or (run_dir / "results.json").exists():
        return f"left {temporary or 'results.json'}"
    try:
        torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    except Exception as error:  # any failure to load is the finding
        return f"last.ckpt does not load: {error}"
    return ""


def stopped_evaluation(verb: str, point: str):
    """SIGTERM at the first batch of ``verb`` (test or predict) with the finished run's checkpoint: 143,
    no new run folder with outputs, the earlier run untouched; then the same command finishes."""

    def run(ws: Workspace) -> Outcome:
        run_dir = fitted(ws)
        runs = ws.root / "runs"
        ws.protect(runs)
        if verb == "predict":
            args = predict_args(run_dir, new_images(ws.root / "new", 3), runs)[1:]
        else:
            args = [*synthetic_args(runs), "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt")]
        stop = driver([point, "1", "TERM", "--", verb, *args])
        outputs = [p for p in runs.rglob("*.csv") if p not in ws.protected]  # of the stopped run
        if outputs:
            return Outcome(1, f"{stop.did}: left {outputs}")
        again = cli([verb, *args])
        return stop if again.exit_code == 0 else Outcome(1, f"{stop.did}; then {again.did}")

    return run


def stopped_extraction(ws: Workspace) -> Outcome:
    """SIGINT after an extraction's first batch: 130, no store half-written; the same command then makes
    whole stores."""
    features = ws.root / "features"
    runs = ws.root / "runs"
    stop = driver(["extract", "1", "INT", "--", "extract", *linear_args(runs, features)])
    half = [p for p in features.rglob("*") if p.name.startswith(".tmp-")] if features.exists() else []
    if half:
        return Outcome(1, f"{stop.did}: left {half}")
    again = cli(["extract", *linear_args(runs, features)], check=lambda: stores_ok(features, 3))
    return stop if again.exit_code == 0 and again.data_ok else Outcome(1, f"{stop.did}; then {again.did}")


# --- the Python API does what the command does ------------------------------------------------------------


def api_args(runs: Path) -> list[str]:
    """The tiny run's command-line arguments without the quickstart config, which ``run.fit`` takes apart."""
    args = synthetic_args(runs)
    return args[2:]  # after "--config quickstart.yaml"


def api_diverged(ws: Workspace) -> Outcome:
    """``run.fit(config, args=[... lr 1e10])``: the command's DivergedError, and the failed results.json."""
    from medtransfer import run

    runs = ws.root / "runs"
    outcome = call(lambda: run.fit(QUICKSTART, args=[*api_args(runs), *DIVERGING]))
    if outcome.exit_code == 2 and not recorded_as_failed(runs / "tiny" / "version_0"):
        return Outcome(1, f"stopped, but no failed results.json: {outcome.message}")
    return outcome


def api_onto_finished(ws: Workspace) -> Outcome:
    """``run.fit`` from objects with a trainer logging into the finished run's folder."""
    from pytorch_lightning.loggers import TensorBoardLogger

    from medtransfer import run
    from medtransfer.datamodules import SyntheticMedical
    from medtransfer.lightning_modules import Finetune

    fitted(ws)
    runs = ws.root / "runs"
    ws.protect(runs)
    data = SyntheticMedical(num_train=32, num_val=16, num_test=16, native_size=32, image_size=32,
                            batch_size=16)
    model = Finetune(backbone="test_resnet", task=data.task)

    def into_version_0():
        pinned = TensorBoardLogger(runs, name="tiny", version=0)
        trainer = run.default_trainer("tiny", max_epochs=1, enable_progress_bar=False, logger=pinned,
                                      default_root_dir=runs)
        return run.fit(model=model, data=data, trainer=trainer)

    return call(into_version_0)


def api_untrained_test(ws: Workspace) -> Outcome:
    """``run.test`` of a model that was never trained, without a checkpoint."""
    from medtransfer import run

    return call(lambda: run.test(QUICKSTART, args=api_args(ws.root / "runs")))


def cases() -> list[Case]:
    return [
        Case("lr 1e10", "diverged", "fit at a learning rate of 1e10", diverged_fit, expect="error",
             says="training diverged at epoch 0, step"),
        Case("a diverged run in a report", "diverged", "benchmark --report: a finished and a diverged run",
             diverged_run_in_a_report, expect="success"),
        Case("fit pinned onto a finished run", "finished", "fit --trainer.logger.init_args.version 0 again",
             onto_finished("fit", PINNED), expect="error", says=r"holds a finished run \(results.json\)"),
        Case("fit --ckpt_path last of a finished run", "finished", "fit --ckpt_path last, the run finished",
             onto_finished("fit", ["--ckpt_path", "last"]), expect="error",
             says="is finished .*nothing to continue"),
        Case("test pinned onto a finished run", "finished", "test into the finished run's folder",
             onto_finished("test", PINNED), expect="error", says=r"holds a finished run \(results.json\)"),
        Case("predict pinned twice", "finished", "predict into a folder holding predictions.csv",
             predict_twice_pinned, expect="error", says=r"holds a finished run \(predictions.csv\)"),
        Case("no logger, a finished default_root_dir", "finished", "fit --trainer.logger false into it",
             no_logger_into_a_finished_folder, expect="error",
             says="give --trainer.default_root_dir another"),
        checkpoint_path_case("a folder", lambda run_dir: run_dir / "checkpoints", "error",
                             "no checkpoint file at"),
        checkpoint_path_case("results.json", lambda run_dir: run_dir / "results.json", "error",
                             "results.json .*not a PyTorch checkpoint"),
        Case("a LinearProbe checkpoint as Finetune", "checkpoint", "test --ckpt_path <LinearProbe> --config "
             "quickstart.yaml (Finetune)", linear_probe_tested_as_finetune, expect="error",
             says="holds a LinearProbe model, but the config names Finetune"),
        Case("a checkpoint tested at another image size", "checkpoint", "test --data.init_args.image_size 64 "
             "of a 32 px model", tested_on_other_images(["--data.init_args.image_size", "64"]),
             expect="error", says="data.init_args.image_size 64 \\(trained at 32 px\\)"),
        Case("a checkpoint tested with the fundus crop", "checkpoint", "test --data.init_args.augmentation "
             "fundus of a natural-preset model", tested_on_other_images(["--data.init_args.augmentation",
                                                                          "fundus"]),
             expect="error", says="data.init_args.augmentation fundus \\(trained with natural"),
        Case("--ckpt_path last before any run", "checkpoint", "fit --ckpt_path last, nothing to continue",
             continue_without_a_run, expect="success"),
        Case("a run continued on half its images", "checkpoint", "fit --ckpt_path last with train_fraction "
             "0.5 of a run that trained on all", continued_on_a_smaller_fraction, expect="error",
             says=r"the training subset \(trained with train_fraction 1.0, fraction_seed 0; now 0.5, 0"),
        Case("run.fit, lr 1e10", "api", "the Python API with a diverging learning rate", api_diverged,
             expect="error", says="training diverged at epoch 0"),
        Case("run.fit into a finished run", "api", "the Python API's trainer logging into version_0",
             api_onto_finished, expect="error", says=r"holds a finished run \(results.json\)"),
        Case("run.test without a checkpoint", "api", "the Python API testing untrained weights",
             api_untrained_test, expect="error", says="untrained weights"),
        Case("SIGTERM during fit", "signal", "SIGTERM after epoch 0's last.ckpt, then --ckpt_path last",
             stopped_fit("TERM"), expect="stopped", says="fit stopped by SIGTERM at epoch"),
        Case("SIGINT during fit", "signal", "Ctrl-C after epoch 0's last.ckpt, then --ckpt_path last",
             stopped_fit("INT"), expect="stopped", says="fit stopped by SIGINT at epoch", in_suite=False),
        Case("SIGTERM during test", "signal", "SIGTERM at the first test batch, then test again",
             stopped_evaluation("test", "test_step"), expect="stopped", says="test stopped by SIGTERM"),
        Case("SIGTERM during predict", "signal", "SIGTERM at the first predict batch, then predict again",
             stopped_evaluation("predict", "predict_step"), expect="stopped",
             says="predict stopped by SIGTERM", in_suite=False),
        Case("SIGINT during extraction", "signal", "Ctrl-C after an extraction's first batch, then again",
             stopped_extraction, expect="stopped", says="extract stopped by SIGINT", in_suite=False),
    ]
