"""What the report gives a paper: fractions as percent and count, bold for every cell the test images cannot
tell from the best (Holm), the decision rule in each caption, the methods paragraph, every table as LaTeX and
CSV, one self-contained report.html (checked in a real browser where chromium is installed), the label
efficiency section, and files that do not change when the results do not."""

from __future__ import annotations

import base64
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from medtransfer.grid.aggregate import cells, collect
from medtransfer.grid.html import report_html
from medtransfer.grid.latex import latex_escape, latex_table
from medtransfer.grid.methods import methods_section
from medtransfer.grid.report import write_report
from medtransfer.grid.report_table import ReportTable, frame_table
from medtransfer.grid.stages import PretrainingRun
from medtransfer.grid.tables import build_tables, fraction_text
from medtransfer.grid.uncertainty import ReportStatistics
from medtransfer.outputs.predictions import Predictions
from medtransfer.outputs.results import write_json_atomic
from medtransfer.stats.paired import holm
from medtransfer.stats.resampling import full_sample
from medtransfer.task import Task

from .bench_helpers import results_document

BINARY = Task("binary", ("normal", "lesion"))
N = 300
TRAIN = {0.1: [47, 48, 48], 1.0: [470, 470, 470]}  # training images per seed: the 10% cells mean 47.67 -> 48
STRENGTH = {("supervised", 1.0): 1.0, ("twin", 1.0): 1.0, ("weak", 1.0): 0.2,
            ("supervised", 0.1): 0.5, ("twin", 0.1): 0.5, ("weak", 0.1): 0.1}
NOISE = {"supervised": 0, "twin": 30, "weak": 20}  # twin: supervised's strength, other noise


def predictions(strength: float, seed: int) -> Predictions:
    labels = np.random.default_rng(100).integers(0, 2, N)
    noise = np.random.default_rng(seed).normal(size=N)
    probs = (1 / (1 + np.exp(-(strength * (labels - 0.5) + noise)))).astype(np.float32)
    return Predictions(BINARY, [f"img{i:04d}" for i in range(N)], probs, labels)


def write_run(folder, backbone: str, seed: int, fraction: float, extra: dict | None = None) -> None:
    scored = predictions(STRENGTH[(backbone, fraction)], NOISE[backbone] + seed + int(10 * fraction))
    scored.write_csv(folder / "test_predictions.csv")
    auroc = float(scored.metrics().evaluate(full_sample(N), ["auroc"])["auroc"][0])
    config = {"seed_everything": seed,
              "model": {"class_path": "medtransfer.lightning_modules.Finetune",
                        "init_args": {"backbone": backbone, "optimizer": "adamw", "lr": 0.003,
                                      "weight_decay": 1e-4, "scheduler": "cosine"}},
              "trainer": {"max_epochs": 7},
              "data": {"class_path": "medtransfer.datamodules.SyntheticMedical",
                       "init_args": {"train_fraction": fraction, "fraction_seed": seed, "batch_size": 32}}}
    data = {"train_fraction": fraction, "image_size": 224, "augmentation": "light",
            "num_samples": {"train": TRAIN[fraction][seed], "val": 100, "test": N}, "sizes": {"train": 470}}
    metrics = {"auroc": auroc, "ece": 0.05, "brier": 0.2}
    document = results_document(config, metrics, seed=seed, backbones=[backbone], model="Finetune",
                                task=BINARY.to_dict(), data=data, extra=extra,
                                predictions={"test": "test_predictions.csv"})
    write_json_atomic(folder / "results.json", document)


YOUDEN = {"decision": {"thresholds": {"lesion": 0.45}, "rule": "youden"}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for (backbone, fraction) in STRENGTH:
        for seed in range(3):
            extra = YOUDEN if backbone == "supervised" else None  # its runs record a validation threshold
            write_run(root / f"{backbone}-{fraction}-{seed}", backbone, seed, fraction, extra)
    return root


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    return write_report(runs, out=tmp_path_factory.mktemp("report"), baseline="supervised", resamples=200)


def row_of(summary: str, first: str) -> list[str]:
    line = next(line for line in summary.splitlines() if line.startswith(f"| {first} |"))
    return [part.strip() for part in line.strip("|").split("|")]


def test_fractions_as_percent_and_training_images():
    assert fraction_text("small", 0.01, 47) == "1% (47)"
    assert fraction_text("0.1", 0.1, None) == "10%"  # the runs record no sizes
    assert fraction_text("0.005", 0.005, 3) == "0.5% (3)"
    assert fraction_text("500", 500.0, 500) == "500 images"  # a count fraction
    assert fraction_text("odd", math.nan, None) == "odd"


def test_column_titles_and_notes_give_percent_and_count(report):
    summary = report.summary.read_text()
    header = "| backbone | SyntheticMedical · 10% (48) · auroc | SyntheticMedical · 100% (470) · auroc |"
    assert header in summary
    assert "**SyntheticMedical · 10% (48)** (Finetune): paired comparisons with supervised" in summary


def test_bold_marks_every_cell_not_significantly_different_from_the_best(runs, report):
    collection = collect(runs)
    statistics = ReportStatistics(collection, resamples=200)
    by_name = {c.labels["backbone"]: c for c in cells(collection) if c.fraction == 1.0}
    best = max(("supervised", "twin"), key=lambda name: by_name[name].mean)
    other = "twin" if best == "supervised" else "supervised"
    compared = [statistics.compare(by_name[name], by_name[best], name, best) for name in (other, "weak")]
    twin_p, weak_p = holm([c.paired.p_value for c in compared])
    assert twin_p >= 0.05 > weak_p  # the construction: one indistinguishable, one clearly worse
    summary = report.summary.read_text()
    full = {name: row_of(summary, name)[2] for name in ("supervised", "twin", "weak")}
    assert full[best].startswith("**") and full[other].startswith("**")
    assert not full["weak"].startswith("**")
    assert "**Bold**: the best mean of its column and every cell not significantly different" in summary


def test_each_caption_states_its_decision_rule(report):
    summary = report.summary.read_text()
    assert ("balanced accuracy of the test decisions at the threshold chosen on validation (youden) for 6 "
            "runs, 0.5 for 12, mean over seeds") in summary


def test_latex_escapes_and_structure():
    assert latex_escape("50% of a_b & c #1 {x} $ ~ ^ \\") == (
        r"50\% of a\_b \& c \#1 \{x\} \$ \textasciitilde{} \textasciicircum{} \textbackslash{}")
    assert latex_escape("± − ⚠1 †2 <0.001") == (
        r"\ensuremath{\pm} \ensuremath{-} \ensuremath{\triangle}1 \ensuremath{\dagger}2 \textless{}0.001")
    table = ReportTable("linear_x", "linear: **Bold** is best; 10% (48)", ["backbone", "a_b · 10%"],
                        [["resnet", "**93.70** ± 0.27"], ["vit", "80.00 ⚠1"]], ["- ⚠1 vit: degenerate"])
    tex = latex_table(table).splitlines()
    assert tex[0] == r"\begin{table}[htbp]" and tex[-1] == r"\end{table}"
    assert r"\caption{linear: \textbf{Bold} is best; 10\% (48)}" in tex and r"\label{tab:linear_x}" in tex
    assert r"\begin{tabular}{ll}" in tex
    rules = [tex.index(rule) for rule in (r"\toprule", r"\midrule", r"\bottomrule")]
    assert rules == sorted(rules) and rules[1] - rules[0] == 2 and rules[2] - rules[1] == 3
    assert tex[rules[0] + 1] == r"backbone & a\_b \ensuremath{\cdot} 10\% \\"
    assert tex[rules[1] + 1] == r"resnet & \textbf{93.70} \ensuremath{\pm} 0.27 \\"
    assert r"\footnotesize \ensuremath{\triangle}1 vit: degenerate" in tex[-2]


def test_csv_round_trips(tmp_path):
    table = ReportTable("t", "c", ["backbone", "score, in points"], [["resnet", "**93.70** ± 0.27"],
                                                                     ["vit", "80.00 ⚠1"]])
    (tmp_path / "t.csv").write_text(table.csv())
    back = pd.read_csv(tmp_path / "t.csv")
    assert back.columns.tolist() == ["backbone", "score, in points"]
    assert back.values.tolist() == [["resnet", "93.70 ± 0.27"], ["vit", "80.00 ⚠1"]]  # bold markup dropped
    frame = pd.DataFrame({"backbone": ["a", "b"], "factor": [1.5, math.nan], "labels": [47, 470]})
    (tmp_path / "f.csv").write_text(frame_table("f", frame, "caption").csv())
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "f.csv"), frame)  # a section's numbers, unrounded
    assert frame_table("f", frame, "caption").rows == [["a", "1.5", "47"], ["b", "—", "470"]]


def test_every_table_is_written_as_csv_and_latex(report):
    names = sorted(p.name for p in (report.folder / "tables").iterdir())
    stems = {"Finetune", "Finetune_calibration", "Finetune_comparisons_SyntheticMedical_0.1",
             "Finetune_comparisons_SyntheticMedical_1", "label_efficiency"}
    assert stems <= {name.rsplit(".", 1)[0] for name in names}
    assert all(f"{stem}.csv" in names and f"{stem}.tex" in names for stem in stems)
    scores = pd.read_csv(report.folder / "tables" / "Finetune.csv")
    assert scores["backbone"].tolist() == ["supervised", "twin", "weak"]
    assert r"\textbf{" in (report.folder / "tables" / "Finetune.tex").read_text()


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_the_html_report_is_self_contained(report):
    page = report.html.read_text()
    summary = report.summary.read_text()
    parsed = Elements()
    parsed.feed(page)
    tags = [tag for tag, _ in parsed.tags]
    assert tags.count("table") == sum(line.startswith("|---") for line in summary.splitlines())
    assert tags.count("strong") == summary.count("**") // 2
    images = [attrs["src"] for tag, attrs in parsed.tags if tag == "img"]
    linked = re.findall(r"^!\[[^\]]*\]\((plots/[^)]+)\)$", summary, flags=re.MULTILINE)
    assert len(images) == len(linked) >= 2  # the score plot and label efficiency
    for src, path in zip(images, linked, strict=True):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (report.folder / path).read_bytes()
    assert "script" not in tags and "link" not in tags and not re.search(r"https?://", page)
    assert "## Label efficiency" in summary and "<h2>Label efficiency</h2>" in page
    assert "<h2>Methods</h2>" in page


def test_html_of_the_markdown_subset():
    markdown = "\n".join(["# T", "", "Some **bold** and `a<b`.", "", "| a | b |", "|---|---|",
                          "| **1** | x \\| y |", "", "- note", "", "![plots/p.png](plots/p.png)",
                          "![plots/gone.png](plots/gone.png)"])
    page = report_html(markdown, {"plots/p.png": b"\x89PNG"})
    assert "<h1>T</h1>" in page and "<p>Some <strong>bold</strong> and <code>a&lt;b</code>.</p>" in page
    assert "<td><strong>1</strong></td><td>x | y</td>" in page and "<li>note</li>" in page
    assert 'src="data:image/png;base64,iVBORw=="' in page and "[figure plots/gone.png: not embedded]" in page


def test_methods_state_what_the_runs_record(runs):
    collection = collect(runs)
    collection.pretraining.append(PretrainingRun(runs / "ssl" / "results.json", "f", None, None, "simclr",
                                                 1.0, 500, 10.0, None, "e"))
    statistics = ReportStatistics(collection, resamples=50)
    text = "\n".join(methods_section(collection, build_tables(collection, cells(collection)), statistics))
    assert text.startswith("## Methods")
    for fact in ("SyntheticMedical: binary task, 2 classes (normal, lesion); 470 training, 100 validation, "
                 "300 test images; images at 224 px; training augmentation: light",
                 "Label fractions of the training split (training images): 10% (48), 100% (470); seeds 0, 1, "
                 "2", "Finetune: Finetune on supervised, twin, weak; AdamW optimiser, learning rate 0.003, "
                 "weight decay 0.0001, schedule cosine, at most 7 epochs, batch size 32.",
                 "Pretraining stages (self-supervised, on the training split): simclr (500 steps).",
                 "95% percentile bootstrap intervals over seeds and test images, 50 resamples",
                 "Holm's correction"):
        assert fact in text, fact


def test_methods_of_the_exact_linear_probe(tmp_path):
    solver = {"kind": "lbfgs", "selected_on": "val/auroc", "tol": 1e-4,
              "path": [{"l2": 0.01}, {"l2": 0.1}, {"l2": 1.0}]}
    config = {"model": {"class_path": "medtransfer.lightning_modules.LinearProbe",
                        "init_args": {"backbone": "resnet", "lr": 0.001, "optimizer": "adamw"}},
              "data": {"init_args": {"batch_size": 64}}}
    write_json_atomic(tmp_path / "r" / "results.json",
                      results_document(config, {"auroc": 0.8}, extra={"solver": solver}))
    collection = collect(tmp_path)
    statistics = ReportStatistics(collection, resamples=10)
    text = "\n".join(methods_section(collection, build_tables(collection, cells(collection)), statistics))
    assert ("LinearProbe: LinearProbe on test_resnet; L2-regularised logistic regression solved exactly "
            "(lbfgs) for each of 3 penalties from 0.01 to 1, the penalty chosen on val/auroc, tolerance "
            "0.0001; "
            "features extracted in batches of 64.") in text
    assert "AdamW" not in text  # the exact solver takes no optimiser steps


def test_methods_name_the_classes_a_run_had_no_test_image_of(tmp_path):
    """A multiclass run whose test split holds no 'severe' image: its macro AUROC averages 2 of 3 classes,
    and the methods say so (the metric leaves the class out with only a warning in the run's log)."""
    task = {"kind": "multiclass", "class_names": ["none", "mild", "severe"], "ordinal": False,
            "primary_metric": "auroc", "num_classes": 3}
    config = {"model": {"class_path": "medtransfer.lightning_modules.Finetune", "init_args": {}}}
    for seed, severe in ((0, 0), (1, 4)):
        counts = {"train": {"none": 9, "mild": 9, "severe": 9},
                  "test": {"none": 4, "mild": 4, "severe": severe}}
        document = results_document(config, {"auroc": 0.8}, task=task, seed=seed)
        document["preflight"] = {"class_counts": counts}
        write_json_atomic(tmp_path / f"s{seed}" / "results.json", document)
    collection = collect(tmp_path)
    text = "\n".join(methods_section(collection, build_tables(collection, cells(collection)),
                                     ReportStatistics(collection, resamples=10)))
    assert ("Without test images in some runs: 'severe'. AUROC is undefined for it, so the macro AUROC of "
            "those runs averages the other 2 of 3 classes, not comparable with a score over all.") in text


def test_writing_twice_changes_nothing_and_stale_files_go(runs, tmp_path):
    out = tmp_path / "report"
    first = write_report(runs, out=out, baseline="supervised", resamples=20)
    assert {p.name for p in first.written} >= {"summary.md", "report.html", "results.csv", "Finetune.tex"}
    contents = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "tables" / "gone.tex").write_text("old")
    (out / "tables" / "gone.csv").write_text("old")
    (out / "plots" / "gone.png").write_bytes(b"old")
    again = write_report(runs, out=out, baseline="supervised", resamples=20)
    assert sorted(p.name for p in again.written) == ["gone.csv", "gone.png", "gone.tex"]  # removed, only
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == contents
    assert write_report(runs, out=out, baseline="supervised", resamples=20).written == []


PROBE = """<script>
addEventListener("load", () => {
  const images = [...document.images].map(i => i.complete ? i.naturalWidth + "x" + i.naturalHeight : "0x0");
  document.body.setAttribute("data-tables", document.querySelectorAll("table").length);
  document.body.setAttribute("data-images", images.join(","));
});
</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium on PATH")
def test_the_html_report_renders_in_a_browser(report, tmp_path):
    page = report.html.read_text()
    probe = tmp_path / "probe.html"  # the report with a script that records what the browser decoded
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
               "--dump-dom", probe.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    body = re.search(r'<body data-tables="(\d+)" data-images="([^"]*)"', done.stdout)
    assert body, done.stderr[-2000:]
    assert int(body[1]) == page.count("<table>")
    sizes = body[2].split(",")
    assert len(sizes) == page.count("<img ") and all(int(w) > 0 and int(h) > 0
                                                      for w, h in (s.split("x") for s in sizes))
