"""The fault matrix's report cases (issue 22): ``medtransfer benchmark --report`` over results a table must
not trust. Runs that decide one class or give constant probabilities, results.json files edited by hand (NaN,
infinity, an AUROC of 7.5, a plausible score the predictions do not give), damaged or foreign results.json
files and missing predictions: each is marked, listed apart or left out and named, never the bold best; every
cell shows the balanced accuracy beside its score. A typo'd ``--metric`` or ``--baseline`` is refused."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .harness import Case, Outcome, Workspace, cli

SEEDS = (0, 1)


def two_backbones(folder: Path) -> Path:
    """results.json and test predictions of two seeds each of a weaker (``supervised``) and a stronger
    (``strong``) backbone, as ``medtransfer fit`` writes them."""
    from tests.grid.test_report_statistics import binary_predictions, write_run

    for seed in SEEDS:
        write_run(folder / f"supervised-{seed}", "supervised", seed, binary_predictions(1.0, seed))
        write_run(folder / f"strong-{seed}", "strong", seed, binary_predictions(3.0, 10 + seed))
    return folder


def report_case(name: str, spoil: Callable[[Path], None], check: Callable[[str], bool]) -> Case:
    """``benchmark --report`` of the two backbones' runs after ``spoil(folder)``; ``check`` reads the
    summary."""

    def run(ws: Workspace) -> Outcome:
        folder = two_backbones(ws.root / "results")
        spoil(folder)
        ws.protect(folder)
        summary = folder / "report" / "summary.md"
        args = ["benchmark", "--report", str(folder), "--out", str(folder / "report"), "--resamples", "20"]
        return cli(args, check=lambda: check(summary.read_text()))

    return Case(name, "report", f"benchmark --report: {name}", run, expect="success")


def cell_of(summary: str, row: str) -> str:
    """The first score cell of ``row`` in the summary's first table."""
    line = next(line for line in summary.splitlines() if line.startswith(f"| {row} |"))
    return line.split(" | ")[1]


def edit_test_score(value) -> Callable[[Path], None]:
    """Set the first strong run's test AUROC in its results.json to ``value``, as a hand edit does."""

    def spoil(folder: Path) -> None:
        path = folder / "strong-0" / "results.json"
        results = json.loads(path.read_text())
        results["metrics"]["test"]["auroc"] = value
        path.write_text(json.dumps(results, indent=2))

    return spoil


def replace_results(text: str) -> Callable[[Path], None]:
    def spoil(folder: Path) -> None:
        (folder / "strong-0" / "results.json").write_text(text)

    return spoil


def truncate_results(folder: Path) -> None:
    path = folder / "strong-0" / "results.json"
    path.write_bytes(path.read_bytes()[:200])


def delete_predictions(folder: Path) -> None:
    (folder / "strong-0" / "test_predictions.csv").unlink()


def decide_one_class(folder: Path) -> None:
    """The strong backbone's runs rank the images well but put every probability under 0.25."""
    from tests.grid.test_decisions import majority_predictions
    from tests.grid.test_report_statistics import write_run

    for seed in SEEDS:
        write_run(folder / f"strong-{seed}", "strong", seed, majority_predictions(seed))


def constant_probabilities(folder: Path) -> None:
    from tests.grid.test_report_statistics import binary_predictions, write_run

    predictions = binary_predictions(3.0, 10)
    predictions.probs = np.full_like(predictions.probs, 0.7)
    write_run(folder / "strong-0", "strong", 0, predictions)


def failed_apart(summary: str) -> bool:
    """The strong row is marked failed and not bold, and the run is listed under Failed runs."""
    strong = cell_of(summary, "strong")
    return "†" in strong and "**" not in strong and "## Failed runs" in summary and "| strong-0 |" in summary


def marked_not_bold(summary: str) -> bool:
    strong = cell_of(summary, "strong")
    return "⚠" in strong and "**" not in strong and cell_of(summary, "supervised").startswith("**")


def left_out_and_named(summary: str) -> bool:
    strong = cell_of(summary, "strong")
    return "1 left out" in summary and "`strong-0/results.json`" in summary and "(n=1)" in strong


def without_interval_said_why(summary: str) -> bool:
    return "test_predictions.csv is missing" in cell_of(summary, "strong")


def balanced_accuracy_beside_each_score(summary: str) -> bool:
    cells = [cell_of(summary, row) for row in ("strong", "supervised")]
    return all("; bal. acc " in cell and math.isfinite(float(cell.split("bal. acc ")[1].split()[0]))
               for cell in cells)


def no_results_folder(ws: Workspace) -> Outcome:
    return cli(["benchmark", "--report", str(ws.root / "results")])


def no_resamples(ws: Workspace) -> Outcome:
    return cli(["benchmark", "--report", str(two_backbones(ws.root / "results")), "--resamples", "0"])


def typo_in(option: str, value: str) -> Callable[[Workspace], Outcome]:
    """``benchmark --report`` with ``option value`` that none of the results has (it wrote a report without a
    table, or without its comparisons, with exit status 0)."""

    def run(ws: Workspace) -> Outcome:
        folder = two_backbones(ws.root / "results")
        return cli(["benchmark", "--report", str(folder), "--resamples", "20", option, value])

    return run


def cases() -> list[Case]:
    return [
        report_case("a backbone that decides one class", decide_one_class, marked_not_bold),
        report_case("constant probabilities", constant_probabilities, marked_not_bold),
        report_case("a test AUROC edited to NaN", edit_test_score(float("nan")), failed_apart),
        report_case("a test AUROC edited to Infinity", edit_test_score(float("inf")), failed_apart),
        report_case("a test AUROC edited to 7.5", edit_test_score(7.5), failed_apart),
        report_case("a test AUROC edited to 0.999", edit_test_score(0.999), marked_not_bold),
        report_case("a truncated results.json", truncate_results, left_out_and_named),
        report_case("a results.json that is {}", replace_results("{}\n"), left_out_and_named),
        report_case("a results.json that is a list", replace_results("[1, 2]\n"), left_out_and_named),
        report_case("test predictions deleted", delete_predictions, without_interval_said_why),
        report_case("balanced accuracy", lambda folder: None, balanced_accuracy_beside_each_score),
        Case("a results folder that does not exist", "report", "benchmark --report missing/",
             no_results_folder, expect="error", says="is not a folder of results"),
        Case("--resamples 0", "report", "benchmark --report --resamples 0", no_resamples, expect="error",
             says="--resamples must be at least 1"),
        Case("--metric aucroc", "report", "benchmark --report --metric aucroc", typo_in("--metric", "aucroc"),
             expect="error", says="holds test/aucroc .* what they hold: test/auroc, val/auroc"),
        Case("--baseline supervisd", "report", "benchmark --report --baseline supervisd",
             typo_in("--baseline", "supervisd"), expect="error",
             says="--baseline 'supervisd' is not a backbone of these results; they have: "),
    ]
