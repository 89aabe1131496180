"""The fault matrix's output cases (issue 22): outputs that cannot be written (an export under a file, a name
too long, a read-only folder, a full disk) are one named error with nothing half-written; ``medtransfer
predict`` reads every format Pillow reads and refuses or names what it cannot score; results.json records the
weights a run started from and produced, and model cards name no folder of this machine; explanation maps of
a 32 px model come from a layer fine enough to show something, and a constant map is drawn as zeros."""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .cases_runs import new_images, predict_args
from .harness import Case, Outcome, Workspace, call, cli, failing_writes, read_only
from .tiny import (
    REPO,
    SYNTHETIC,
    fitted,
    image_folder,
    linear_args,
    results_ok,
    synthetic_args,
    trainer_args,
)

# --- outputs that cannot be written (class 6) ---------------------------------------------------------------


def export_args(run_dir: Path, output: Path) -> list[str]:
    return ["export", "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), "--format", "torchscript",
            "--output", str(output)]


def refused_export(output_of, refusal=None):
    """``export`` of the tiny run's checkpoint to ``output_of(folder)``, with ``refusal(folder)`` (a context
    that makes writes fail) around it: nothing may appear in the folder."""

    def run(ws: Workspace) -> Outcome:
        run_dir = fitted(ws)
        out = ws.root / "out"
        out.mkdir()
        (out / "notes.txt").write_text("a file, not a folder")
        ws.protect(ws.root / "runs", out)
        with refusal(out) if refusal is not None else contextlib.nullcontext():
            outcome = cli(export_args(run_dir, output_of(out)))
        left = sorted(p.name for p in out.iterdir())
        return outcome if left == ["notes.txt"] else Outcome(1, f"{outcome.did}; left {left}")

    return run


def export_into_new_folders(ws: Workspace) -> Outcome:
    """``export --output`` under folders that do not exist yet: made, and the model and its card written."""
    run_dir = fitted(ws)
    output = ws.root / "exports" / "2024" / "model.pt"
    return cli(export_args(run_dir, output), check=lambda: exported(output))


def exported(output: Path) -> bool:
    card = json.loads(output.with_name(output.name + ".card.json").read_text())
    return torch.jit.load(str(output)) is not None and card["export"]["file"] == output.name


def logger_folder_is_a_file(ws: Workspace) -> Outcome:
    """``--trainer.logger.init_args.save_dir`` naming a file: refused, the file untouched."""
    taken = ws.root / "runs.txt"
    taken.write_text("notes\n")
    ws.protect(taken)
    return cli(["fit", *synthetic_args(ws.root / "runs"), "--trainer.logger.init_args.save_dir", str(taken)])


def splits_file_is_a_folder(ws: Workspace) -> Outcome:
    """``prepare --splits_file`` naming an existing folder."""
    root = image_folder(ws.root / "data")
    (ws.root / "splits.csv").mkdir()
    return cli(["prepare", "--data", "medtransfer.datamodules.ImageFolder", "--data.init_args.root",
                str(root), "--splits_file", str(ws.root / "splits.csv")])


# --- predict (class 8) --------------------------------------------------------------------------------------


def predicted(ws: Workspace, images: Path, extra: tuple[str, ...] = ()) -> tuple[Outcome, Path]:
    """``predict`` of the folder (or glob, or list) ``images`` with the tiny run's checkpoint, and where its
    predictions go."""
    run_dir = fitted(ws)
    runs = ws.root / "predicted"
    return cli([*predict_args(run_dir, images, runs), *extra]), runs


def predictions_of(runs: Path) -> list[dict]:
    with open(next(runs.rglob("predictions.csv")), newline="") as handle:
        return list(csv.DictReader(handle))


def scored_exactly(runs: Path, names: list[str]) -> bool:
    """predictions.csv has one row per image in ``names`` (ids, in order) with finite probabilities."""
    rows = predictions_of(runs)
    probabilities = [float(v) for row in rows for k, v in row.items() if k.startswith("prob_")]
    return [row["id"] for row in rows] == names and all(math.isfinite(p) for p in probabilities)


def every_pillow_format(ws: Workspace) -> Outcome:
    """WEBP, TIFF, BMP, GIF, PNG and an upper-case .JPG, beside a text file and a .DS_Store: every image is
    scored, the other files are left out."""
    folder = ws.root / "new"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = {"scan.webp": "WEBP", "scan.tiff": "TIFF", "scan.bmp": "BMP", "scan.gif": "GIF",
             "scan.png": "PNG", "SCAN2.JPG": "JPEG"}
    for name, kind in names.items():
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), np.uint8)).save(folder / name, kind)
    (folder / "notes.txt").write_text("scanned on Monday\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    outcome, runs = predicted(ws, folder)
    if outcome.exit_code == 0:
        outcome.data_ok = scored_exactly(runs, sorted(names))
    return outcome


def odd_shapes(ws: Workspace) -> Outcome:
    """A 1 x 1 image, a 300 x 20 grey strip and a 16-bit grey PNG: each scored."""
    folder = ws.root / "new"
    folder.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (1, 1, 3), np.uint8)).save(folder / "a_dot.png")
    Image.fromarray(rng.integers(0, 256, (20, 300), np.uint8)).save(folder / "b_strip.png")
    Image.fromarray(rng.integers(0, 65535, (30, 30)).astype(np.uint16)).save(folder / "c_16bit.png")
    outcome, runs = predicted(ws, folder)
    if outcome.exit_code == 0:
        outcome.data_ok = scored_exactly(runs, ["a_dot.png", "b_strip.png", "c_16bit.png"])
    return outcome


def prediction_input_case(name: str, make, says: str, expect: str = "error", names=None, extra=()) -> Case:
    """``predict`` of what ``make(case folder)`` returns (a folder, a glob or a list)."""

    def run(ws: Workspace) -> Outcome:
        outcome, runs = predicted(ws, make(ws.root), tuple(extra))
        if outcome.exit_code == 0:
            outcome.data_ok = names is not None and scored_exactly(runs, names)
        return outcome

    return Case(name, "predict", f"predict: {name}", run, expect=expect, says=says)


def empty_folder(root: Path) -> Path:
    (root / "empty").mkdir()
    return root / "empty"


def glob_of_nothing(root: Path) -> str:
    new_images(root / "new", 2)
    return str(root / "new" / "*.jpg")


def list_naming_a_missing_file(root: Path) -> Path:
    new_images(root / "new", 2)
    (root / "list.csv").write_text("path\nnew/scan0.png\nnew/scan7.png\n")
    return root / "list.csv"


def with_a_broken_image(root: Path) -> Path:
    new_images(root / "new", 3)
    (root / "new" / "scan1.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return root / "new"


PREDICT_INPUTS = [
    prediction_input_case("an empty folder", empty_folder, "no images that Pillow reads"),
    prediction_input_case("a glob that matches nothing", glob_of_nothing, "matches no image file"),
    prediction_input_case("a list naming a missing file", list_naming_a_missing_file, "scan7.png"),
    prediction_input_case("a broken image", with_a_broken_image, "scan1.png: unreadable or truncated image"),
    prediction_input_case("a broken image, skip_corrupt", with_a_broken_image, "", "success",
                          ["scan0.png", "scan2.png"], ["--data.init_args.skip_corrupt", "true"]),
]


# --- provenance (class 9) -----------------------------------------------------------------------------------


def weights_record(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())["model"]["weights"]


def finetuned_provenance(ws: Workspace) -> Outcome:
    """A finetuned backbone: ``initial`` is the fingerprint of the weights it started from, ``produced`` that
    of the backbone in the tested checkpoint, and the two differ."""
    from medtransfer.backbones.backbone import state_dict_fingerprint

    run_dir = fitted(ws)
    record = weights_record(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    tested = torch.load(results["checkpoint"], weights_only=True)["state_dict"]
    prefix = "backbone.model."
    backbone = {k[len(prefix):]: v for k, v in tested.items() if k.startswith(prefix)}
    return Outcome(0, data_ok=(
        record["initial"] == [results["model"]["backbones"][0]["fingerprint"]]
        and record["produced"]["fingerprint"] == state_dict_fingerprint(backbone)
        and record["produced"]["fingerprint"] != record["initial"][0]))


def provenance_of_a_weights_file(ws: Workspace) -> Outcome:
    """A Finetune run from a weights file (``model.init_args.checkpoint``): ``initial`` is that file's
    weights' fingerprint, as loading it alone gives."""
    from medtransfer.backbones import create_backbone

    weights = ws.root / "weights" / "start.pth"
    weights.parent.mkdir()
    torch.manual_seed(5)
    torch.save(create_backbone("test_resnet").model.state_dict(), weights)
    expected = create_backbone("test_resnet", checkpoint=str(weights)).fingerprint
    runs = ws.root / "runs"
    return cli(["fit", *synthetic_args(runs), "--model.init_args.checkpoint", str(weights)],
               check=lambda: weights_record(runs / "tiny" / "version_0")["initial"] == [expected])


def linear_probe_provenance(ws: Workspace) -> Outcome:
    """A linear probe trains a head only: ``produced`` is null, ``initial`` the frozen backbone's."""
    runs = ws.root / "runs"

    def recorded() -> bool:
        run_dir = runs / "tiny" / "version_0"
        record = weights_record(run_dir)
        backbones = json.loads((run_dir / "results.json").read_text())["model"]["backbones"]
        return record["produced"] is None and record["initial"] == [b["fingerprint"] for b in backbones]

    return cli(["fit", *linear_args(runs, ws.root / "features")], check=recorded)


def pretrained_export_provenance(ws: Workspace) -> Outcome:
    """SSL pretraining: ``produced`` names the backbone export by a path relative to the run folder, and its
    fingerprint is the export's."""
    from medtransfer.backbones import create_backbone

    runs = ws.root / "runs"
    args = ["fit", "--config", str(REPO / "configs" / "pretrain" / "simclr.yaml"), "--config", str(SYNTHETIC),
            "--model.init_args.backbone", "test_resnet", "--data.init_args.num_train", "32",
            "--data.init_args.num_val", "16", "--data.init_args.num_test", "16",
            "--data.init_args.batch_size", "16", "--data.init_args.native_size", "32",
            "--trainer.accelerator", "cpu", *trainer_args(runs, name="ssl")]

    def recorded() -> bool:
        run_dir = runs / "ssl" / "version_0"
        produced = weights_record(run_dir)["produced"]
        export = run_dir / produced["path"]
        loaded = create_backbone("test_resnet", checkpoint=str(export))
        return not Path(produced["path"]).is_absolute() and produced["fingerprint"] == loaded.fingerprint

    return cli(args, check=recorded)


def card_without_machine_paths(ws: Workspace) -> Outcome:
    """The model card of an export outside the run folder names no folder of this machine."""
    run_dir = fitted(ws)
    output = ws.root / "exports" / "model.pt"

    def portable() -> bool:
        texts = [output.with_name(output.name + suffix).read_text() for suffix in (".card.json", ".card.md")]
        return all(str(ws.root.parent) not in text and '"/' not in text for text in texts)

    return cli([*export_args(run_dir, output), "--verify", "false"], check=portable)


# --- explanations (class 10) --------------------------------------------------------------------------------


def explained_predictions(ws: Workspace) -> Outcome:
    """``predict --explain`` with a 32 px model: a map per image, named in predictions.csv."""
    outcome, runs = predicted(ws, new_images(ws.root / "new", 3), ("--explain",))
    if outcome.exit_code == 0:
        rows = predictions_of(runs)
        folder = next(runs.rglob("predictions.csv")).parent
        outcome.data_ok = len(rows) == 3 and all(readable_png(folder / row["explanation"]) for row in rows)
    return outcome


def readable_png(path: Path) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and min(image.size) > 0


def explained_test(ws: Workspace) -> Outcome:
    """``test --explain`` of the tiny run's checkpoint: whole results and at least one map image."""
    run_dir = fitted(ws)
    runs = ws.root / "runs"
    ws.protect(runs)
    args = ["test", *synthetic_args(runs), "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"),
            "--explain"]

    def maps_written() -> bool:
        tested = runs / "tiny" / "version_1"
        return results_ok(tested) and any(readable_png(p) for p in tested.rglob("*.png"))

    return cli(args, check=maps_written)


def explainer_of_the_tiny_run(ws: Workspace):
    from medtransfer.explain import Explainer
    from medtransfer.export import load_trained_model

    model, _ = load_trained_model(fitted(ws) / "checkpoints" / "last.ckpt")
    return Explainer(), model


def coarse_layer_moved(ws: Workspace) -> Outcome:
    """Grad-CAM of a CNN at 32 px: its last stage's map is 1 x 1, so the map comes from an earlier stage of 4
    x 4 cells or more, with a warning that says so."""
    explainer, model = explainer_of_the_tiny_run(ws)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)

    def explain():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            explained = explainer.explain(model, images)
        return explained, [str(w.message) for w in caught]

    def moved(result) -> bool:
        explained, said = result
        maps = explained.maps[0]
        return min(maps.maps.shape[-2:]) >= 4 and any(maps.layer in text for text in said)

    return call(explain, check=moved)


def constant_map_drawn_as_zeros(ws: Workspace) -> Outcome:
    """A head whose weights collapsed to zero: the class score does not depend on the image, Grad-CAM's map
    is zero everywhere, and drawn it is all zeros (not the NaN of stretching 0 / 0 to the colour range)."""
    from medtransfer.explain.figures import scaled_map

    explainer, model = explainer_of_the_tiny_run(ws)
    with torch.no_grad():
        model.head[-1].weight.zero_()
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)

    def drawn():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = explainer.explain(model, images).maps[0].maps[0]
        return scaled_map(raw, (32, 32))

    return call(drawn, check=lambda pixels: bool(torch.isfinite(pixels).all())
                and float(pixels.abs().max()) == 0)


def cases() -> list[Case]:
    return [
        Case("export under a file", "outputs", "export --output <a file>/model.pt",
             refused_export(lambda out: out / "notes.txt" / "model.pt"), expect="error",
             says="notes.txt is a file, not a folder"),
        Case("export name too long", "outputs", "export --output <300 characters>.pt",
             refused_export(lambda out: out / f"{'m' * 300}.pt"), expect="error", says="File name too long"),
        Case("export into a read-only folder", "outputs", "export into a folder nobody may write",
             refused_export(lambda out: out / "model.pt", read_only), expect="error",
             says="read-only|no permission"),
        Case("export onto a full disk", "outputs", "ENOSPC while the export is written",
             refused_export(lambda out: out / "model.pt", lambda out: failing_writes(errno.ENOSPC, out)),
             expect="error", says="the disk is full"),
        Case("export into folders not made yet", "outputs", "export --output new/folders/model.pt",
             export_into_new_folders, expect="success"),
        Case("logger save_dir is a file", "outputs", "--trainer.logger.init_args.save_dir runs.txt",
             logger_folder_is_a_file, expect="error", says="runs.txt is a file, not a folder"),
        Case("splits file is a folder", "outputs", "prepare --splits_file <an existing folder>",
             splits_file_is_a_folder, expect="error", says="splits.csv"),
        Case("every format Pillow reads", "predict", "WEBP, TIFF, BMP, GIF, PNG, .JPG, a .txt and .DS_Store",
             every_pillow_format, expect="success"),
        Case("1x1, 300x20 and 16-bit images", "predict", "images of odd shapes and depths", odd_shapes,
             expect="success"),
        *PREDICT_INPUTS,
        Case("a finetuned backbone", "provenance", "results.json: initial and produced weights",
             finetuned_provenance, expect="success"),
        Case("a backbone from a weights file", "provenance", "model.init_args.checkpoint: its fingerprint",
             provenance_of_a_weights_file, expect="success"),
        Case("a linear probe", "provenance", "a head on a frozen backbone produces no backbone",
             linear_probe_provenance, expect="success"),
        Case("an SSL export", "provenance", "pretraining's backbone export, by a relative path",
             pretrained_export_provenance, expect="success"),
        Case("a model card", "provenance", "export's card names no folder of this machine",
             card_without_machine_paths, expect="success"),
        Case("predict --explain at 32 px", "explain", "a map per new image of a 32 px model",
             explained_predictions, expect="success"),
        Case("test --explain at 32 px", "explain", "test maps of a 32 px model", explained_test,
             expect="success"),
        Case("a 1x1 last stage", "explain", "Grad-CAM moves to an earlier stage, with a warning",
             coarse_layer_moved, expect="success"),
        Case("a collapsed head", "explain", "a constant (zero) map is drawn as zeros",
             constant_map_drawn_as_zeros, expect="success"),
    ]
