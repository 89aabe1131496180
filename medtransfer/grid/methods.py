"""summary.md's methods section, written from what the results.json files record: the data and its
splits, the label fractions and seeds, each protocol's model, optimiser or solver and settings, the
pretraining stages, and how the intervals and comparisons were computed. A methods paragraph copied from here
states what was run, not what a config file meant to run; a setting no run records is left out, not
guessed."""

from __future__ import annotations

from collections import defaultdict

from .aggregate import Collection, Record
from .tables import Table, fraction_text
from .uncertainty import ReportStatistics

OPTIMISERS = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD", "lars": "LARS"}


def methods_section(collection: Collection, tables: list[Table], statistics: ReportStatistics) -> list[str]:
    """``## Methods`` and its paragraphs (none without finished runs)."""
    if not collection.records:
        return []
    lines = ["## Methods", ""]
    datasets = list(dict.fromkeys(r.labels["dataset"] for r in collection.records))
    for dataset in datasets:
        lines += [data_paragraph(dataset, [r for r in collection.records if r.labels["dataset"] == dataset],
                                 tables), ""]
    protocols: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in collection.records:
        protocols[(record.labels["protocol"], str(record.results["model"].get("name")))].append(record)
    for (protocol, model), records in protocols.items():
        lines += [protocol_paragraph(protocol, model, records), ""]
    if collection.pretraining:
        stages = [f"{run.method} ({'steps unknown' if run.steps is None else f'{run.steps} steps'}"
                  + (f", run {run.run_id})" if run.run_id else ")") for run in collection.pretraining]
        lines += [f"Pretraining stages (self-supervised, on the training split): {', '.join(stages)}.", ""]
    return [*lines, statistics_paragraph(collection, statistics), ""]


def data_paragraph(dataset: str, records: list[Record], tables: list[Table]) -> str:
    """The dataset's task, split sizes, image size, augmentation, label fractions and seeds."""
    task = records[0].results["task"]
    classes = task.get("class_names") or []
    data = [r.results["data"] for r in records]
    full = distinct(d.get("sizes", {}).get("train") for d in data)
    sizes = [("training", full or distinct(d.get("num_samples", {}).get("train") for d in data
                                            if d.get("train_fraction") == 1)),
             ("validation", distinct(d.get("num_samples", {}).get("val") for d in data)),
             ("test", distinct(d.get("num_samples", {}).get("test") for d in data))]
    known = [f"{n} {split}" for split, n in sizes if n]
    names = ", ".join(map(str, classes))
    text = (f"{dataset}: {task.get('kind', '?')} task, {len(classes)} classes ({names})"
            + (f"; {', '.join(known)} images" if known else ""))
    image_size, augmentation = distinct(d.get("image_size") for d in data), distinct(d.get("augmentation")
                                                                                   for d in data)
    text += f"; images at {image_size} px" if image_size else ""
    text += f"; training augmentation: {augmentation}" if augmentation else ""
    fractions = list(dict.fromkeys(col.fraction_text for t in tables for col in t.columns
                                   if col.dataset == dataset))
    seeds = distinct(r.seed for r in records)
    return (text + f". Label fractions of the training split (training images): {', '.join(fractions)}"
            + (f"; seeds {seeds}" if seeds else "")
            + "; the validation and test splits are never subsampled." + unscored_classes_text(task, records))


def unscored_classes_text(task: dict, records: list[Record]) -> str:
    """A sentence naming the classes (findings) without a test image (a positive one) in some run: their
    AUROC is undefined, so the macro AUROC of those runs averages the other classes only. '' when every class
    has test images, and for binary tasks (such a fit is refused). Read from results.json's preflight."""
    if task.get("kind") not in ("multiclass", "multilabel"):
        return ""
    classes = [str(name) for name in task.get("class_names") or []]
    counts = [r.results.get("preflight", {}).get("class_counts", {}).get("test", {}) for r in records]
    missing = [name for name in classes if any(found.get(name) == 0 for found in counts)]
    if not missing:
        return ""
    images = "positive test images" if task["kind"] == "multilabel" else "test images"
    return (f" Without {images} in some runs: {', '.join(map(repr, missing))}. AUROC is undefined for "
            f"{'it' if len(missing) == 1 else 'them'}, so the macro AUROC of those runs averages the other "
            f"{len(classes) - len(missing)} of {len(classes)} classes, not comparable with a score over all.")


def protocol_paragraph(protocol: str, model: str, records: list[Record]) -> str:
    """How the protocol's model was trained: the exact solver's penalty path, or the optimiser and its
    settings, as the runs record them."""
    backbones = distinct("+".join(b.get("name", "?") for b in r.results["model"].get("backbones") or [])
                         for r in records)
    text = f"{protocol}: {model}" + (f" on {backbones}" if backbones else "")
    solvers = [(r.results.get("extra") or {}).get("solver") for r in records]
    solvers = [s for s in solvers if isinstance(s, dict) and s.get("kind")]
    if solvers:
        return text + "; " + solver_text(solvers, records) + "."
    args = [init_args(r) for r in records]
    optimiser = distinct(OPTIMISERS.get(str(a.get("optimizer")).lower(), a.get("optimizer")) for a in args
                         if a.get("optimizer"))
    parts = [f"{optimiser} optimiser" if optimiser else "",
             setting("learning rate", (a.get("lr") for a in args)),
             setting("weight decay", (a.get("weight_decay") for a in args)),
             setting("schedule", (a.get("scheduler") for a in args)),
             setting("warm-up epochs", (a.get("warmup_epochs") for a in args)),
             epochs_text(records),
             setting("batch size", (data_args(r).get("batch_size") for r in records)),
             setting("backbones", (a.get("mode") for a in args))]
    parts = [p for p in parts if p]
    return text + ("; " + ", ".join(parts) if parts else "") + "."


def epochs_text(records: list[Record]) -> str:
    """``at most 3 epochs``, or per label fraction where a grid gives each its own budget (``at most 30
    epochs at 1%, 9 at 10%, 3 at 100%``)."""
    by_fraction: dict[float, set] = defaultdict(set)
    for record in records:
        by_fraction[record.fraction].add(trainer_args(record).get("max_epochs"))
    values = {v for found in by_fraction.values() for v in found if v is not None}
    if len(values) <= 1:
        return setting("at most", values, " epochs")
    parts = [f"{distinct(found)} at {fraction_text(str(fraction), fraction, None)}"
             for fraction, found in sorted(by_fraction.items()) if distinct(found)]
    return "at most " + ", ".join(parts).replace(" at ", " epochs at ", 1)


def solver_text(solvers: list[dict], records: list[Record]) -> str:
    """The exact linear probe: solver, penalty grid, and the metric that chose the penalty."""
    grids = {tuple(p["l2"] for p in s.get("path") or [] if isinstance(p, dict) and "l2" in p)
             for s in solvers}
    grid = max(grids, key=len) if grids else ()
    text = f"L2-regularised logistic regression solved exactly ({distinct(s['kind'] for s in solvers)})"
    if grid:
        text += (f" for each of {len(grid)} penalties from {min(grid):g} to {max(grid):g}"
                 + (" (the grid differs between runs)" if len(grids) > 1 else ""))
    selected = distinct(s.get("selected_on") for s in solvers)
    text += f", the penalty chosen on {selected}" if selected else ""
    tol = distinct(s.get("tol") for s in solvers)
    text += f", tolerance {tol}" if tol else ""
    batch = distinct(data_args(r).get("batch_size") for r in records)
    return text + (f"; features extracted in batches of {batch}" if batch else "")


def statistics_paragraph(collection: Collection, statistics: ReportStatistics) -> str:
    metrics = distinct(f"{r.split}/{r.metric}" for r in collection.records)
    level = round(100 * statistics.confidence)
    unit = "test images (whole patients where known)" if statistics.grouped else "test images"
    return (f"Scores: {metrics}, mean over seeds. Uncertainty: {level}% percentile bootstrap intervals over "
            f"seeds and {unit}, {statistics.resamples} resamples; paired comparisons on the same resamples "
            "(two-sided bootstrap p, and DeLong's test for binary AUROC), with Holm's correction over the "
            f"comparisons of each table at {100 - level}%.")


def init_args(record: Record) -> dict:
    model = record.results["config"].get("model") or {}
    return (model.get("init_args") or model) if isinstance(model, dict) else {}


def trainer_args(record: Record) -> dict:
    trainer = record.results["config"].get("trainer")
    return trainer if isinstance(trainer, dict) else {}


def data_args(record: Record) -> dict:
    data = record.results["config"].get("data") or {}
    return (data.get("init_args") or data) if isinstance(data, dict) else {}


def setting(name: str, values, unit: str = "") -> str:
    found = distinct(values)
    return f"{name} {found}{unit}" if found else ""


def distinct(values) -> str:
    """The values that occur (None left out), in order of first appearance for text and sorted for numbers,
    joined by ", "; "" when none."""
    found = list(dict.fromkeys(v for v in values if v is not None and v != ""))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in found):
        found.sort()
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in found)
