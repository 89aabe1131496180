"""The fault matrix's cases (issue 17): every fault one row, run by ``tests/faults/test_fault_matrix.py`` (the
cheap ones) and ``benchmarks/fault_matrix.py`` (all of them, with subprocesses for the faults that kill).

A case passes when medtransfer either succeeds with output checked against the expected data, or stops with
exit status 2 and a one-line message; and no file written before the fault (results.json, checkpoints,
feature stores, splits files, reports) is lost or changed."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from .harness import Case, Outcome, Workspace, call, cli, disk_full_in, driver, read_only
from .images import BROKEN, VALID, plain_png
from .tiny import (
    LINEAR,
    REPO,
    fitted,
    folder_args,
    image_folder,
    linear_args,
    newest_version,
    results_ok,
    rows,
    stores_of,
    stores_ok,
    synthetic_args,
    trainer_args,
    unfinished,
)

# --- images -------------------------------------------------------------------------------------------------


def image_case(kind: str, skip: bool) -> Case:
    valid = kind in VALID
    suffix, make = (VALID if valid else BROKEN)[kind]

    def run(ws: Workspace) -> Outcome:
        from medtransfer.datamodules.errors import SkippedSample
        from medtransfer.datamodules.images import FileSource

        path = ws.root / f"image{suffix}"
        expected = make(path)
        source = FileSource(
            [path], np.zeros(1, np.int64), ["the-image"], origins=["list.csv row 2"], skip_corrupt=skip
        )
        try:
            pixels = source.load_image(0)
        except SkippedSample:
            return Outcome(0, data_ok=skip and not valid and "the-image" in source.skipped)
        outcome = call(lambda: pixels)
        if valid:
            outcome.data_ok = pixels.shape == expected.shape and np.array_equal(pixels, expected)
        else:
            outcome.data_ok = False  # an unreadable file must not decode to pixels
        return outcome

    def guarded(ws: Workspace) -> Outcome:
        failure: list[Exception] = []
        try:
            return run(ws)
        except Exception as error:  # what the command would make of it: exit 2 or a crash
            failure.append(error)
        return call(lambda: _raise(failure[0]))

    mode = "skip_corrupt" if skip else "strict"
    did = "read, pixels = PIL reference" if valid else ("skipped and counted" if skip else "named error")
    return Case(
        f"{kind} ({mode})",
        "image",
        f"{kind}; expected: {did}",
        guarded,
        expect="success" if valid or skip else "error",
    )


def _raise(error: Exception):
    raise error


def odd_paths(ws: Workspace) -> Outcome:
    """A non-UTF-8 file name, a 600-character path and a folder symlink loop, read through ImageFolder."""
    from medtransfer.datamodules import ImageFolder

    root = image_folder(ws.root / "data", per_class=4)
    odd = os.fsdecode(b"normal_\xff\xfe.png")
    plain_png(root / "normal" / odd)
    deep = root / "lesion" / ("d" * 200) / ("e" * 200)
    deep.mkdir(parents=True)
    plain_png(deep / ("f" * 200 + ".png"))
    (root / "lesion" / "loop").symlink_to("..", target_is_directory=True)

    def read_all():
        dm = ImageFolder(root=str(root), image_size=16, batch_size=4, val_fraction=0.2, test_fraction=0.2)
        dm.setup("fit")
        total = 0
        for split in ("train", "val", "test"):
            source = dm.sources()[split]
            total += sum(source.load_image(i).shape[2] == 3 for i in range(len(source)))
        dm.data_fingerprint()
        return total

    return call(read_all, check=lambda total: total == 10)


def unusual_images_fit(ws: Workspace) -> Outcome:
    """fit + test on a folder holding every valid unusual image kind and a non-UTF-8 name: results.json and a
    predictions row for every test image."""
    root = image_folder(ws.root / "data", per_class=6)
    for i, (suffix, make) in enumerate(VALID.values()):
        make(root / ("lesion" if i % 2 else "normal") / f"unusual_{i}{suffix}")
    plain_png(root / "lesion" / os.fsdecode(b"caf\xe9.png"))
    runs = ws.root / "runs"
    return cli(
        ["fit", *folder_args(root, runs)], check=lambda: every_image_used(runs / "tiny" / "version_0", 20)
    )


def every_image_used(run_dir: Path, count: int) -> bool:
    """The run read all ``count`` images (none skipped) and predicted every test image."""
    sizes = json.loads((run_dir / "results.json").read_text())["data"]["num_samples"]
    return sum(sizes.values()) == count and results_ok(run_dir, sizes["test"])


# --- tables -------------------------------------------------------------------------------------------------


def table_case(name: str, text: bytes | None, expect: str, labels: list | None = None, group: str = "table",
               says: str = "", **data) -> Case:
    """A CSV dataset of 12 images whose label file is ``text`` (``{i}`` rows are images 0..11), read with the
    CSVDataset arguments ``data``; on success each image's label must be ``labels[i]``."""

    def run(ws: Workspace) -> Outcome:
        from medtransfer.datamodules import CSVDataset

        root = ws.root / "data"
        root.mkdir()
        for i in range(12):
            plain_png(root / f"img{i:02d}.png")
        (root / "labels.csv").write_bytes(text if text is not None else b"")

        def load():
            dm = CSVDataset(root=str(root), val_fraction=0.25, test_fraction=0.25, image_size=16, **data)
            dm.setup("fit")
            return dm

        def check(dm) -> bool:
            got = {}
            for source in dm.sources().values():
                got.update(zip(source.ids, np.asarray(source.labels).tolist(), strict=True))
            return labels is not None and [got.get(f"img{i:02d}.png") for i in range(12)] == labels

        return call(load, check)

    return Case(name, group, f"labels.csv: {name}", run, expect=expect, says=says)


GOOD = [i % 2 for i in range(12)]
TABLES = [
    table_case("valid table", rows(GOOD), "success", GOOD),
    table_case("UTF-8 BOM", b"\xef\xbb\xbf" + rows(GOOD), "success", GOOD),
    table_case("Windows line ends", rows(GOOD, b"\r\n"), "success", GOOD),
    table_case("duplicated rows", rows(GOOD) + b"img03.png,1\n", "error"),
    table_case("missing label column", rows(GOOD, header=b"path,grade"), "error"),
    table_case("label out of range", rows(GOOD[:-1] + [2]), "error", class_names=["a", "b"]),
    table_case("negative label", rows(GOOD[:-1] + [-1]), "error"),
    table_case("NaN label", rows(GOOD[:-1] + ["nan"]), "error"),
    table_case("empty label", rows(GOOD[:-1] + [""]), "error"),
    table_case("empty file", None, "error"),
    table_case("header only", b"path,label\n", "error"),
    table_case("listed image missing", rows(GOOD).replace(b"img05.png", b"gone.png"), "error"),
    table_case("Latin-1 encoded file", rows(GOOD).replace(b"img00.png", b"img\xe900.png"), "error"),
]


# --- checkpoints --------------------------------------------------------------------------------------------


def checkpoint_case(name: str, edit, expect: str, kind: str = "binary", in_suite: bool = True) -> Case:
    """``medtransfer test --ckpt_path`` on a checkpoint of the tiny run changed by ``edit(path)``."""

    def run(ws: Workspace) -> Outcome:
        run_dir = fitted(ws)
        ws.protect(ws.root / "runs")
        checkpoint = ws.root / "other.ckpt"
        shutil.copy(run_dir / "checkpoints" / "last.ckpt", checkpoint)
        edit(checkpoint)
        runs = ws.root / "runs"
        argv = ["test", *synthetic_args(runs, kind=kind), "--ckpt_path", str(checkpoint)]
        return cli(argv, check=lambda: results_ok(runs / "tiny" / "version_1"))

    return Case(name, "checkpoint", f"test --ckpt_path: {name}", run, expect=expect, in_suite=in_suite)


def _edit_checkpoint(path: Path, change) -> None:
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)


def _other_backbone(checkpoint: dict) -> None:
    checkpoint["hyper_parameters"]["backbone"] = "test_convnext"


def _other_version(checkpoint: dict) -> None:
    assert checkpoint["medtransfer_version"]
    checkpoint["pytorch-lightning_version"] = "2.0.0"
    checkpoint["medtransfer_version"] = "0.0.1"


def _newer_setting(checkpoint: dict) -> None:
    checkpoint["medtransfer_version"] = "9.0.0"
    checkpoint["hyper_parameters"]["option_of_a_newer_version"] = 1


def _renamed_weights(checkpoint: dict) -> None:
    state = checkpoint["state_dict"]
    key = next(iter(state))
    state[key.replace(".", ".old_layout.", 1)] = state.pop(key)


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _pickle(path: Path) -> None:
    torch.save({"state_dict": {}, "object": Path("x")}, path)  # a Path: unpickling it runs a constructor


CHECKPOINTS = [
    checkpoint_case("checkpoint of another task", lambda p: None, "error", kind="multilabel"),
    checkpoint_case(
        "checkpoint of another backbone", lambda p: _edit_checkpoint(p, _other_backbone), "error"
    ),
    checkpoint_case(
        "checkpoint of another version",
        lambda p: _edit_checkpoint(p, _other_version),
        "success",
        in_suite=False,
    ),
    checkpoint_case(
        "a newer version's model setting", lambda p: _edit_checkpoint(p, _newer_setting), "error"
    ),
    checkpoint_case(
        "another version's weight layout", lambda p: _edit_checkpoint(p, _renamed_weights), "error"
    ),
    checkpoint_case("truncated checkpoint", _truncate, "error"),
    checkpoint_case("checkpoint that is not weights-only", _pickle, "error"),
    checkpoint_case("empty checkpoint file", lambda p: p.write_bytes(b""), "error"),
]


# --- full disk, read-only folders ---------------------------------------------------------------------------


def disk_full_results(ws: Workspace) -> Outcome:
    run_dir = fitted(ws)
    ws.protect(ws.root / "runs")
    runs = ws.root / "runs"
    checkpoint = str(run_dir / "checkpoints" / "last.ckpt")
    with disk_full_in("medtransfer.outputs.results.json.dump", nth=2):  # the first is preflight.json
        outcome = cli(["test", *synthetic_args(runs), "--ckpt_path", checkpoint])
    if outcome.exit_code == 2:  # the error left no half file, and the next try works
        stray = [p for p in runs.rglob("*results.json*") if p.parent != run_dir]
        retry = cli(
            ["test", *synthetic_args(runs), "--ckpt_path", checkpoint],
            check=lambda: results_ok(newest_version(runs / "tiny")),
        )
        if stray or retry.exit_code:
            outcome.message += f" [then: stray {stray}, retry {retry.did}]"
            outcome.exit_code = 1
    return outcome


def disk_full_checkpoint(ws: Workspace) -> Outcome:
    """Continuing a run stopped before its test for a second epoch, with a full disk when last.ckpt is
    saved."""
    run_dir = unfinished(ws)
    ws.protect(run_dir / "checkpoints")  # config.yaml is the continued run's
    runs = ws.root / "runs"
    with disk_full_in("torch.save"):
        outcome = cli(["fit", *synthetic_args(runs, max_epochs=2), "--ckpt_path", "last"])
    stray = [p for p in (runs / "tiny" / "version_0" / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    if stray:
        outcome = Outcome(1, f"left {stray}")
    return outcome


def disk_full_store(ws: Workspace) -> Outcome:
    features = ws.root / "features"
    runs = ws.root / "runs"
    with disk_full_in("medtransfer.features.store.np.save", nth=2):
        outcome = cli(["extract", *linear_args(runs, features)])
    leftovers = [p for p in features.rglob("*") if p.name.startswith(".tmp-")] if features.exists() else []
    if leftovers or (features.exists() and stores_of(features)):
        outcome = Outcome(1, f"a failed store left {leftovers or stores_of(features)}")
    return outcome


def prepare_splits_args(root: Path, splits: Path) -> list[str]:
    """``medtransfer prepare`` of an image folder, writing its splits file."""
    return ["prepare", "--data", "medtransfer.datamodules.ImageFolder", "--data.init_args.root", str(root),
            "--splits_file", str(splits)]


def disk_full_splits(ws: Workspace) -> Outcome:
    root = image_folder(ws.root / "data")
    splits = ws.root / "splits.csv"
    args = prepare_splits_args(root, splits)
    first = cli(args)
    if first.exit_code:
        return first
    ws.protect(splits)
    with disk_full_in("csv.writer"):
        return cli(args)


def disk_full_report(ws: Workspace) -> Outcome:
    from medtransfer.grid.report import write_report

    results = _hand_made_results(ws.root / "grid", 4)
    first = call(lambda: write_report(results, resamples=50))
    if first.exit_code:
        return first
    ws.protect(results / "report")
    _hand_made_results(ws.root / "grid", 6)
    with disk_full_in("medtransfer.utils.atomic.Path.write_bytes"):
        return call(lambda: write_report(results, resamples=50))


def _hand_made_results(folder: Path, count: int) -> Path:
    from medtransfer.outputs.results import write_json_atomic
    from tests.grid.bench_helpers import results_document

    for i in range(count):
        backbone = ("a", "b")[i % 2]
        document = results_document(
            {"seed_everything": i}, {"auroc": 0.6 + 0.01 * i}, seed=i, backbones=[backbone]
        )
        write_json_atomic(folder / f"run{i}" / "results.json", document)
    return folder


def read_only_runs(ws: Workspace) -> Outcome:
    fitted(ws)
    runs = ws.root / "runs"
    ws.protect(runs)
    with read_only(runs / "tiny"):
        return cli(["fit", *synthetic_args(runs)])


def read_only_features(ws: Workspace) -> Outcome:
    features = ws.root / "features"
    features.mkdir()
    with read_only(features):
        return cli(["extract", *linear_args(ws.root / "runs", features)])


def read_only_splits(ws: Workspace) -> Outcome:
    root = image_folder(ws.root / "data")
    out = ws.root / "out"
    out.mkdir()
    with read_only(out):
        return cli(prepare_splits_args(root, out / "splits.csv"))


def concurrent_same_version(ws: Workspace) -> Outcome:
    """A second fit on the run folder another fit holds (its lock taken as that process would)."""
    from medtransfer.runtime.lock import holding, run_folder_busy

    run_dir = unfinished(ws)  # a finished run would be refused as finished, before its lock is asked for
    ws.protect(ws.root / "runs")
    runs = ws.root / "runs"
    with holding(run_dir, run_folder_busy(run_dir)):
        return cli(["fit", *synthetic_args(runs), "--trainer.logger.init_args.version", "0"])


def concurrent_processes(ws: Workspace) -> Outcome:
    """Two real fit processes at once on one log folder (same name, next free version)."""
    import subprocess
    import sys

    fitted(ws)
    ws.protect(ws.root / "runs")
    runs = ws.root / "runs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "medtransfer.cli", "fit", *synthetic_args(runs)]
    procs = [
        subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        for _ in range(2)
    ]
    codes = [p.wait(timeout=600) for p in procs]
    errors = [p.stderr.read() for p in procs]
    finished = [d for d in (runs / "tiny").glob("version_*") if d.name != "version_0"]
    ok = [d for d in finished if (d / "results.json").is_file() and results_ok(d)]
    if sorted(codes) == [0, 0]:
        return Outcome(0, data_ok=len(ok) == 2)
    if sorted(codes) == [0, 2]:
        return Outcome(
            2, errors[codes.index(2)].strip().splitlines()[-1] + f" (the other run finished: {len(ok)})"
        )
    return Outcome(max(codes), f"exit statuses {codes}: {errors[0][-300:]}")


# --- killed processes ---------------------------------------------------------------------------------------


def killed_fit_checkpoint(ws: Workspace) -> Outcome:
    """SIGKILL while the second epoch's last.ckpt is written; then ``--ckpt_path last`` finishes the run."""
    runs = ws.root / "runs"
    args = synthetic_args(runs, max_epochs=2)
    kill = driver(["replace:last.ckpt", "2", "--", "fit", *args])
    checkpoints = runs / "tiny" / "version_0" / "checkpoints"
    if kill.exit_code != -9:
        return Outcome(1, f"expected a SIGKILL, got {kill.did}")
    ws.protect(checkpoints / "last.ckpt")
    before = torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"]
    ws.protected.clear()  # the resumed run rightly rewrites last.ckpt; it had to be whole (read above)
    return cli(
        ["fit", *args, "--ckpt_path", "last"],
        check=lambda: before == 0 and results_ok(runs / "tiny" / "version_0"),
    )


def killed_results(ws: Workspace) -> Outcome:
    """SIGKILL while a test writes its results.json beside an earlier run's: no half file is left, the earlier
    run is untouched, and the same command then writes whole results. (A finished run's results.json is
    never written over: medtransfer refuses the folder.)"""
    run_dir = fitted(ws)
    runs = ws.root / "runs"
    ws.protect(runs)
    args = ["test", *synthetic_args(runs), "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt")]
    kill = driver(["replace:results.json", "--", *args])
    if kill.exit_code != -9:
        return Outcome(1, f"expected a SIGKILL, got {kill.did}")
    half = [p for p in runs.rglob("results.json") if p.parent != run_dir]
    if half:
        return Outcome(1, f"the killed write left {half}")
    return cli(args, check=lambda: results_ok(newest_version(runs / "tiny")))


def killed_report(ws: Workspace) -> Outcome:
    from medtransfer.grid.report import write_report

    results = _hand_made_results(ws.root / "grid", 4)
    write_report(results, resamples=50)
    ws.protect(results / "report")
    _hand_made_results(ws.root / "grid", 6)
    kill = driver(["replace:summary.md", "--", "benchmark", "--report", str(results), "--resamples", "50"])
    if kill.exit_code != -9:
        return Outcome(1, f"expected a SIGKILL, got {kill.did}")
    ws.protected.clear()
    summary = (results / "report" / "summary.md").read_text()
    return call(
        lambda: write_report(results, resamples=50),
        check=lambda report: report.summary.read_text() != summary,
    )


def killed_extraction(ws: Workspace, point: str) -> Outcome:
    """SIGKILL inside an extraction (``point``), with the stores of an earlier run of other data beside it;
    then the same command makes complete stores."""
    features = ws.root / "features"
    runs = ws.root / "runs"
    earlier = cli(["extract", *linear_args(runs, features), "--data.init_args.seed", "7"])
    if earlier.exit_code:
        return earlier
    ws.protect(features)
    kill = driver([point, "--", "extract", *linear_args(runs, features)])
    if kill.exit_code != -9:
        return Outcome(1, f"expected a SIGKILL, got {kill.did}")
    return cli(["extract", *linear_args(runs, features)], check=lambda: stores_ok(features, 6))


# --- the dataset changed between prepare and fit ------------------------------------------------------------


def sixteen_listed_images(ws: Workspace) -> Path:
    """``data/img00.png`` ... ``img15.png`` listed in ``data/labels.csv`` with labels 0, 1, 0, 1, ..."""
    root = ws.root / "data"
    root.mkdir()
    for i in range(16):
        plain_png(root / f"img{i:02d}.png")
    (root / "labels.csv").write_bytes(rows([i % 2 for i in range(16)]))
    return root


def changed_dataset(change: str):
    def run(ws: Workspace) -> Outcome:
        root = sixteen_listed_images(ws)
        splits = ws.root / "splits.csv"
        data = [
            "--data",
            "medtransfer.datamodules.CSVDataset",
            "--data.init_args.root",
            str(root),
            "--data.init_args.val_fraction",
            "0.25",
            "--data.init_args.test_fraction",
            "0.25",
        ]
        prepared = cli(["prepare", *data, "--splits_file", str(splits)])
        if prepared.exit_code:
            return prepared
        ws.protect(splits)
        if change == "deleted":
            (root / "img05.png").unlink()
        elif change == "corrupted":
            (root / "img05.png").write_bytes(b"\x89PNG\r\n")
        else:  # relabelled
            (root / "labels.csv").write_bytes(rows([1 - i % 2 for i in range(16)]))
        runs = ws.root / "runs"
        args = folder_args(root, runs)
        args[args.index("medtransfer.datamodules.ImageFolder")] = "medtransfer.datamodules.CSVDataset"
        outcome = cli(["fit", *args])
        if change == "relabelled" and outcome.exit_code == 0:  # the run used the table as it is now
            rows_now = csv.DictReader((runs / "tiny" / "version_0" / "test_predictions.csv").open(newline=""))
            labels_now = {f"img{i:02d}.png": 1 - i % 2 for i in range(16)}
            outcome.data_ok = all(int(row["label"]) == labels_now[row["id"]] for row in rows_now)
        return outcome

    expect = "success" if change == "relabelled" else "error"
    return Case(
        f"dataset {change} after prepare",
        "dataset",
        f"an image {change} between prepare and fit"
        if change != "relabelled"
        else "labels.csv rewritten between prepare and fit",
        run,
        expect=expect,
        in_suite=change != "relabelled",
    )


def grown_dataset_store(ws: Workspace) -> Outcome:
    """Images added after the stores were extracted: new stores under new keys, the old ones untouched."""
    from medtransfer.features.store import FeatureStore

    features = ws.root / "features"
    runs = ws.root / "runs"
    first = cli(["extract", *linear_args(runs, features)])
    if first.exit_code:
        return first
    ws.protect(features)
    args = linear_args(runs, features)
    args[args.index("--data.init_args.num_train") + 1] = "40"
    return cli(
        ["extract", *args],
        check=lambda: (
            stores_ok(features, 6) and any(len(FeatureStore.open(s)) == 40 for s in stores_of(features))
        ),
    )


def rewritten_image_store(ws: Workspace) -> Outcome:
    """An image exported again under its name (inverted) after the stores were extracted: its split is
    extracted again, its row alone differing; the other splits' stores are reused, the old ones untouched."""
    from PIL import Image, ImageOps

    from medtransfer.features.store import FeatureStore

    root = sixteen_listed_images(ws)
    features = ws.root / "features"
    args = ["extract", "--data", "medtransfer.datamodules.CSVDataset", "--data.init_args.root", str(root),
            "--data.init_args.val_fraction", "0.25", "--data.init_args.test_fraction", "0.25",
            "--data.init_args.image_size", "32", "--config", str(LINEAR), "--model.init_args.backbone",
            "test_resnet", "--model.init_args.features_dir", str(features), "--trainer.accelerator", "cpu",
            *trainer_args(ws.root / "runs")]
    first = cli(args)
    if first.exit_code:
        return first
    before = {store.name.split("-")[0]: FeatureStore.open(store) for store in stores_of(features)}
    ws.protect(features)
    image = root / "img05.png"
    later = image.stat().st_mtime_ns + 10**9
    with Image.open(image) as original:
        ImageOps.invert(original.convert("RGB")).save(image)
    os.utime(image, ns=(later, later))

    def only_its_row_changed() -> bool:
        stores = stores_of(features)
        new = [FeatureStore.open(s) for s in stores if s not in {old.path for old in before.values()}]
        if len(stores) != 4 or len(new) != 1:
            return False
        old = before[new[0].path.name.split("-")[0]]
        changed = np.flatnonzero(np.any(new[0].features != old.features, axis=1))
        return new[0].ids.tolist() == old.ids.tolist() and [str(old.ids[i]) for i in changed] == ["img05.png"]

    return cli(args, check=only_its_row_changed)


# --- the matrix ---------------------------------------------------------------------------------------------


def storage_cases() -> list[Case]:
    """The cases of issue 17: unusual and broken images, label tables, checkpoints, full disks, read-only
    folders, concurrent runs, kills, and datasets changed between steps."""
    cases = [image_case(kind, skip) for kind in [*VALID, *BROKEN] for skip in (False, True)]
    cases += [
        Case(
            "non-UTF-8 name, long path, folder symlink loop",
            "image",
            "odd paths in an ImageFolder",
            odd_paths,
            expect="success",
        ),
        Case(
            "fit on unusual images",
            "image",
            "fit + test on every unusual valid kind",
            unusual_images_fit,
            expect="success",
            in_suite=False,
        ),
    ]
    cases += TABLES + CHECKPOINTS
    cases += [
        Case(
            "disk full: results.json",
            "disk full",
            "ENOSPC writing results.json (test)",
            disk_full_results,
            expect="error",
            says="results.json: No space left",
        ),
        Case(
            "disk full: checkpoint",
            "disk full",
            "ENOSPC saving last.ckpt (continued fit)",
            disk_full_checkpoint,
            expect="error",
            says="No space left",
        ),
        Case(
            "disk full: feature store",
            "disk full",
            "ENOSPC writing a store's second array",
            disk_full_store,
            expect="error",
        ),
        Case(
            "disk full: splits file",
            "disk full",
            "ENOSPC rewriting prepare's splits file",
            disk_full_splits,
            expect="error",
        ),
        Case(
            "disk full: report",
            "disk full",
            "ENOSPC rewriting a benchmark report",
            disk_full_report,
            expect="error",
        ),
        Case(
            "read-only run folder",
            "read-only",
            "fit into a read-only logger folder",
            read_only_runs,
            expect="error",
        ),
        Case(
            "read-only features folder",
            "read-only",
            "extract into a read-only features_dir",
            read_only_features,
            expect="error",
        ),
        Case(
            "read-only splits folder",
            "read-only",
            "prepare --splits_file into a read-only folder",
            read_only_splits,
            expect="error",
        ),
        Case(
            "concurrent fit, same version",
            "concurrent",
            "fit on a run folder another fit holds",
            concurrent_same_version,
            expect="error",
            says="is being written by another medtransfer run",
        ),
        Case(
            "two fit processes at once",
            "concurrent",
            "two fit processes, one log folder",
            concurrent_processes,
            in_suite=False,
        ),
        Case(
            "SIGKILL: checkpoint save",
            "kill",
            "SIGKILL writing last.ckpt, then --ckpt_path last",
            killed_fit_checkpoint,
            expect="success",
        ),
        Case(
            "SIGKILL: results write",
            "kill",
            "SIGKILL writing results.json beside an earlier run's",
            killed_results,
            expect="success",
            in_suite=False,
        ),
        Case(
            "SIGKILL: report write",
            "kill",
            "SIGKILL writing summary.md, then report again",
            killed_report,
            expect="success",
            in_suite=False,
        ),
        Case(
            "SIGKILL: extraction",
            "kill",
            "SIGKILL after an extraction's first batch, then again",
            lambda ws: killed_extraction(ws, "extract"),
            expect="success",
            in_suite=False,
        ),
        Case(
            "SIGKILL: store write",
            "kill",
            "SIGKILL writing a store's manifest, then again",
            lambda ws: killed_extraction(ws, "store"),
            expect="success",
            in_suite=False,
        ),
        changed_dataset("deleted"),
        changed_dataset("corrupted"),
        changed_dataset("relabelled"),
        Case(
            "image rewritten after extraction",
            "dataset",
            "an image exported again under its name after the stores were made",
            rewritten_image_store,
            expect="success",
        ),
        Case(
            "dataset grown after extraction",
            "dataset",
            "more images than when the stores were made",
            grown_dataset_store,
            expect="success",
            in_suite=False,
        ),
    ]
    return cases
