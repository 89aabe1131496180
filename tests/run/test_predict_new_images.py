"""Scoring new, unlabelled images with a trained model: a folder, a glob or a CSV of paths in, a CSV of id,
path, per-class probabilities and the predicted class out; the classes and image size come from the
checkpoint; thresholds chosen on validation data agree with scikit-learn; evaluating an untrained head is
refused."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from medtransfer.cli import main
from medtransfer.datamodules import NewImages
from medtransfer.datamodules.errors import DatasetLayoutError
from medtransfer.datamodules.unlabelled_predict import NewImagesError, list_images
from medtransfer.export import load_trained_model
from medtransfer.lightning_modules import KNN, Finetune
from medtransfer.lightning_modules.metrics import probabilities
from medtransfer.outputs.thresholds import choose_threshold
from medtransfer.run.inference import UntrainedModelError, check_trained, prepare_for_new_images
from tests.conftest import quiet_trainer_args
from tests.export.checkpoints import SIZE, tiny_data, train_checkpoint


def write_images(folder, count: int, seed: int = 0, size: int = 40) -> list:
    """``count`` RGB PNGs of ``size`` px, half of them in a subfolder."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / ("sub" if i % 2 else "") / f"image{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def binary_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("binary")
    data = tiny_data("binary")
    return train_checkpoint(folder, Finetune(backbone="test_resnet", task=data.task), data)


def read_rows(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_a_folder_a_glob_and_a_csv_list_the_same_images(tmp_path):
    paths = write_images(tmp_path / "new", 4)
    (tmp_path / "new" / ".hidden.png").write_bytes(b"")
    found, ids = list_images(str(tmp_path / "new"))
    assert ids == ["image0.png", "image2.png", "sub/image1.png", "sub/image3.png"]
    globbed, _ = list_images(str(tmp_path / "new" / "**" / "*.png"))
    assert sorted(globbed) == sorted(found) == sorted(paths)
    (tmp_path / "list.csv").write_text("path\nnew/sub/image3.png\nnew/image0.png\n")
    listed, listed_ids = list_images(str(tmp_path / "list.csv"))
    assert listed_ids == ["new/sub/image3.png", "new/image0.png"] and listed == [paths[3], paths[0]]


def test_bad_lists_name_the_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no images"):
        list_images(str(tmp_path / "empty"))
    with pytest.raises(DatasetLayoutError, match="matches no image"):
        list_images(str(tmp_path / "*.jpg"))
    (tmp_path / "list.csv").write_text("path\nmissing.png\n")
    with pytest.raises(DatasetLayoutError, match="missing.png"):
        list_images(str(tmp_path / "list.csv"))
    with pytest.raises(NewImagesError, match="--ckpt_path"):
        NewImages(root=str(tmp_path))


def test_predict_scores_a_folder_with_the_checkpoint_classes(binary_checkpoint, tmp_path, capsys):
    paths = write_images(tmp_path / "new", 5)
    (tmp_path / "new" / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="1 of 6 images were unreadable and skipped"):
        main(["predict", "--ckpt_path", str(binary_checkpoint), "--data", "NewImages",
              "--data.init_args.root", str(tmp_path / "new"), "--data.init_args.skip_corrupt", "true",
              "--data.init_args.batch_size", "4", *quiet_trainer_args(tmp_path / "runs", "new", 1)])
    predictions = next((tmp_path / "runs").rglob("predictions.csv"))
    assert f"predictions: {predictions}" in capsys.readouterr().out
    rows = read_rows(predictions)
    assert list(rows[0]) == ["id", "path", "prob_normal", "prob_lesion", "predicted"]
    by_path = {row["path"]: row for row in rows}
    assert sorted(by_path) == sorted(str(p) for p in paths)

    model, _ = load_trained_model(binary_checkpoint)  # the same images through the checkpoint by hand
    (tmp_path / "new" / "broken.png").unlink()
    data = NewImages(root=str(tmp_path / "new"), task=model.task.to_dict(), image_size=SIZE)
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    assert [row["id"] for row in rows] == batch["id"]  # the folder's order, the unreadable image left out
    with torch.no_grad():
        expected = probabilities(model.task, model.logits(batch)).numpy()
    paths_by_id = data.image_paths()
    for image_id, probability in zip(batch["id"], expected, strict=True):
        row = by_path[paths_by_id[image_id]]
        assert float(row["prob_lesion"]) == pytest.approx(probability, abs=1e-6)
        assert row["predicted"] == ("lesion" if probability >= 0.5 else "normal")


def test_multilabel_thresholds_are_chosen_on_the_validation_split(tmp_path):
    data = tiny_data("multilabel")
    checkpoint = train_checkpoint(tmp_path / "model", Finetune(backbone="test_resnet", task=data.task), data)
    validation = tmp_path / "config.yaml"
    init_args = {"kind": "multilabel", "num_train": 16, "num_val": 16, "num_test": 8, "native_size": SIZE,
                 "image_size": SIZE, "batch_size": 8}
    validation.write_text(yaml.safe_dump({"data": {"class_path": "medtransfer.datamodules.SyntheticMedical",
                                                   "init_args": init_args}}))
    write_images(tmp_path / "new", 3)
    main(["predict", "--ckpt_path", str(checkpoint), "--data", "NewImages",
          "--data.init_args.root", str(tmp_path / "new"), "--data.init_args.threshold", "f1",
          "--data.init_args.validation_data", str(validation),
          *quiet_trainer_args(tmp_path / "runs", "ml", 1)])
    predictions = next((tmp_path / "runs").rglob("predictions.csv"))
    chosen = yaml.safe_load(predictions.with_name("predictions_thresholds.json").read_text())
    assert chosen["rule"] == "f1" and chosen["validation_samples"] == 16

    model, _ = load_trained_model(checkpoint)
    validation_data = tiny_data("multilabel")
    validation_data.setup("validate")
    batches = list(validation_data.eval_dataloader("val"))
    with torch.no_grad():
        probs = np.concatenate([probabilities(model.task, model.logits(b)).numpy() for b in batches])
    labels = np.concatenate([b["label"].numpy() for b in batches])
    for column, name in enumerate(model.task.class_names):
        if name in chosen["left_at_0.5"]:
            assert chosen["thresholds"][name] == 0.5
            continue
        assert chosen["thresholds"][name] == pytest.approx(choose_threshold(labels[:, column],
                                                                            probs[:, column], "f1"))
    for row in read_rows(predictions):
        over = [n for n in model.task.class_names if float(row[f"prob_{n}"]) >= chosen["thresholds"][n]]
        assert row["predicted"] == "|".join(over)


@pytest.mark.parametrize("rule", ["f1", "youden"])
def test_threshold_rules_agree_with_scikit_learn(rule):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    probs = np.clip(0.3 * labels + rng.normal(0.35, 0.2, 200), 0, 1).round(2)  # ties included
    chosen = choose_threshold(labels, probs, rule)
    candidates = np.unique(probs)
    if rule == "f1":
        precision, recall, thresholds = metrics.precision_recall_curve(labels, probs)
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        by_threshold = dict(zip(thresholds, f1[:-1], strict=True))
        scores = [by_threshold.get(t, -1.0) for t in candidates]
    else:
        fpr, tpr, thresholds = metrics.roc_curve(labels, probs)
        youden = dict(zip(thresholds, tpr - fpr, strict=True))
        scores = [youden.get(t, -1.0) for t in candidates]
    best = max(scores)
    highest_best = max(t for t, s in zip(candidates, scores, strict=True) if s >= best - 1e-12)
    assert highest_best == pytest.approx(chosen)
    assert choose_threshold(np.ones(5), np.linspace(0, 1, 5), rule) is None  # no negatives: undefined


def test_evaluating_an_untrained_head_is_refused(tmp_path, tiny_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["test", *tiny_cli(tmp_path / "runs")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "without --ckpt_path" in message and "--allow_untrained true" in message
    assert "Traceback" not in message
    assert not list((tmp_path / "runs").rglob("results.json"))
    model = Finetune(backbone="test_resnet", task=tiny_data().task)
    check_trained(model, "test", None, allow_untrained=True)
    check_trained(model, "fit", None, allow_untrained=False)
    knn = KNN(backbone="test_resnet", features_dir=str(tmp_path), task=tiny_data().task)
    check_trained(knn, "test", None, allow_untrained=False)  # nothing to train: no checkpoint needed
    for verb in ("validate", "predict"):
        with pytest.raises(UntrainedModelError):
            check_trained(model, verb, None, allow_untrained=False)
    new_images = NewImages(root=str(tmp_path), task=knn.task.to_dict(), image_size=SIZE)
    with pytest.raises(NewImagesError, match="kNN votes"):
        prepare_for_new_images(knn, new_images)


def test_new_images_with_a_non_utf8_file_name_get_an_id_that_csv_and_json_take(tmp_path):
    """A Latin-1 file name (an old scanner's) keeps its real path and gets an id with the odd byte escaped,
    as ImageFolder's ids do (``images.sample_id``), in a folder and through a glob."""
    import json

    from PIL import Image

    from medtransfer.datamodules.unlabelled_predict import list_images

    name = os.fsdecode(b"scan_caf\xe9.png")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / name)
    for root in (str(tmp_path), str(tmp_path / "*.png")):
        paths, ids = list_images(root)
        assert paths[0].name == name and paths[0].is_file()
        assert ids[0].endswith("scan_caf\\xe9.png")
        json.dumps(ids)
        ids[0].encode("utf-8")


def write_other_formats(folder) -> list:
    """A WEBP, a TIFF, a BMP and a GIF next to the PNGs, and two files that are not images Pillow reads."""
    rng = np.random.default_rng(5)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in ("webp", "tiff", "bmp", "gif"):
        path = folder / f"other.{suffix}"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    (folder / "notes.txt").write_text("scanned on the 3rd")
    (folder / "scan.dcm").write_bytes(b"DICM" + bytes(128))
    return paths


def test_every_format_pillow_reads_is_scored_and_the_files_left_out_are_named(binary_checkpoint, tmp_path):
    images = write_images(tmp_path / "new", 3) + write_other_formats(tmp_path / "new")
    said = (rf"2 file\(s\) under {tmp_path / 'new'} are not images Pillow reads \(1 \.dcm, 1 \.txt\) and are "
            r"left out: notes\.txt, scan\.dcm")
    with pytest.warns(UserWarning, match=said):
        main(["predict", "--ckpt_path", str(binary_checkpoint), "--data", "NewImages",
              "--data.init_args.root", str(tmp_path / "new"),
              *quiet_trainer_args(tmp_path / "runs", "new", 1)])
    rows = read_rows(next((tmp_path / "runs").rglob("predictions.csv")))
    assert sorted(row["path"] for row in rows) == sorted(str(p) for p in images)
    assert {row["id"] for row in rows} >= {"other.webp", "other.tiff", "other.bmp", "other.gif"}


def test_a_glob_and_a_folder_name_what_they_leave_out_and_refuse_a_selection_without_images(tmp_path):
    images = write_other_formats(tmp_path / "new")
    with pytest.warns(UserWarning, match=r"2 file\(s\) under .*new/\* are not images Pillow reads"):
        found, ids = list_images(str(tmp_path / "new" / "*"))
    assert found == sorted(images) and ids == [str(p) for p in sorted(images)]
    for path in images:
        path.unlink()
    only = rf"matches no image file that Pillow reads.*; it matches only {tmp_path / 'new' / 'notes.txt'}, "
    with pytest.raises(DatasetLayoutError, match=only + r".*scan\.dcm"):
        list_images(str(tmp_path / "new" / "*"))
    holds = r"no images that Pillow reads \(PNG, JPEG, TIFF, BMP, GIF, WEBP, \.\.\.\) under .*; it holds: "
    with pytest.raises(DatasetLayoutError, match=holds + r"notes\.txt, scan\.dcm"):
        list_images(str(tmp_path / "new"))
