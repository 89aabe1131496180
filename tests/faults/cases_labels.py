"""The fault matrix's class-set cases (issue 22, docs/datasets.md "Classes"): label tables and class folders
that would silently change the task are refused, naming the file, column or folder; classes declared with
``class_names`` are kept. Then the slips of a hurried user's table or folder tree: a header typo, a BOM with a
stray space, a semicolon file, split names in capitals, Jupyter's and macOS's hidden folders, nested folders;
and the images in it: every size and mode at once, and a split that leaves a training batch of one image.
"""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image

from .cases import GOOD, every_image_used, table_case
from .harness import Case, Outcome, Workspace, call, cli
from .images import plain_png
from .tiny import folder_args, image_folder, rows

SPLITS = ("train", "val", "test")


def spelled(labels: list[str], sep: bytes = b"\n") -> bytes:
    """A labels.csv of 12 images with class names (or numbers) as written in ``labels``."""
    return rows(labels, sep)


def with_split(pairs: list[str], header: bytes = b"path,label,split") -> bytes:
    """A labels.csv whose rows are ``label,split`` (or any further columns) after each image's path."""
    return rows(pairs, header=header)


# --- label columns that change the task (class 1) ----------------------------------------------------------

SPLIT_OF = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
ONE_SPACED = ["sick " if i == 3 else ("normal", "sick")[i % 2] for i in range(12)]
TEST_ONLY_CLASS = ["a,train", "b,train"] * 5 + ["c,test", "c,test"]
NEVER_POSITIVE = [f"{i % 2},0,train" for i in range(10)] + ["1,1,test", "0,1,test"]

LABEL_TABLES = [
    table_case("numbers and names mixed", spelled(["normal", "0", "1", "sick"] * 3), "error",
               group="labels", says="mixes class numbers .* and class names"),
    table_case("one class in two cases", spelled(["Normal", "normal", "sick"] * 4), "error",
               group="labels", says="differ only in case"),
    table_case("one number written three ways", spelled(["1", "1.0", "01", "0"] * 3), "error",
               group="labels", says="one number written differently"),
    table_case("a fractional class number", spelled(["0.0", "1.0", "0.5"] * 4), "error",
               group="labels", says="not class numbers"),
    table_case("a skipped class number", spelled(["0", "2"] * 6), "error",
               group="labels", says="skips 1 class number"),
    table_case("a trailing space on one row", spelled(ONE_SPACED), "error",
               group="labels", says="'sick ' .* differ only in surrounding spaces"),
    table_case("a class only in the test split", with_split(TEST_ONLY_CLASS), "error",
               group="labels", says=r"class 'c' \(train 0, val 0, test 2\) has no training images",
               split_column="split"),
    table_case("a finding never positive in training", with_split(NEVER_POSITIVE, b"path,a,b,split"), "error",
               group="labels", says="finding 'b' .* has no training positive images",
               label_columns=["a", "b"], split_column="split"),
    table_case("class_names declares mixed labels", spelled(["normal", "0", "1", "sick"] * 3), "success",
               labels=[0, 0, 1, 1] * 3, group="labels", class_names=["normal", "sick"]),
    table_case("class_names keeps a test-only class", with_split(TEST_ONLY_CLASS), "success",
               labels=[0, 1] * 5 + [2, 2], group="labels", class_names=["a", "b", "c"], split_column="split"),
]


# --- a hurried user's label tables --------------------------------------------------------------------------

MORE_TABLES = [
    table_case("header typo 'lable'", rows(GOOD, header=b"path,lable"), "error",
               says=r"has no column\(s\) \['label'\] \(found \['path', 'lable'\]\)"),
    table_case("spaces around the header names", rows(GOOD, header=b"path , label "), "success", GOOD),
    table_case("BOM, CRLF and a trailing space", b"\xef\xbb\xbf" + spelled(ONE_SPACED, b"\r\n"), "error",
               says="differ only in surrounding spaces"),
    table_case("semicolon-separated file", rows(GOOD).replace(b",", b";"), "error",
               says=r"found \['path;label'\]"),
    table_case("one row with an extra field", rows(GOOD).replace(b"img05.png,1", b"img05.png,1,x"), "error",
               says="cannot read .* as CSV"),
    table_case("every listed image under another folder", rows(GOOD).replace(b"img", b"scans/img"), "error",
               says=r"none of the 12 images labels.csv lists exists \(e.g. .*scans/img00.png\): check "
                    r"data.init_args.root"),
    table_case("absolute image paths that are missing",
               rows(GOOD).replace(b"img05.png", b"/nonexistent/scans/img05.png"), "error",
               says="listed images are missing"),
    table_case("label 'inf' beside class numbers", spelled(["0", "inf"] * 6), "error",
               says="mixes class numbers"),
    table_case("unknown split value 'holdout'", with_split([f"{i % 2},{('train', 'holdout')[i % 2]}"
                                                            for i in range(12)]),
               "error", says="split='holdout'", split_column="split"),
    # patient p0's images 0 and 1 in train, its image 10 in test: a model tested on a patient it trained on
    table_case("a patient in the training and the test split",
               with_split([f"{i % 2},{SPLIT_OF[i]},p{0 if i == 10 else i // 2}" for i in range(12)],
                          header=b"path,label,split,patient"),
               "error", says=r"1 patient\(s\) have images in more than one split: 'p0' \(train 2, test 1\)",
               split_column="split", patient_column="patient"),
    table_case("a patient written ' p0 ' in the test split", with_split(
        [f"{i % 2},{SPLIT_OF[i]},{' p0 ' if i == 10 else f'p{i // 2}'}" for i in range(12)],
        header=b"path,label,split,patient"), "error", says=r"'p0' \(train 2, test 1\)",
        split_column="split", patient_column="patient"),
    table_case("patients each in one split", with_split(
        [f"{i % 2},{SPLIT_OF[i]},p{i // 2}" for i in range(12)], header=b"path,label,split,patient"),
        "success", GOOD, split_column="split", patient_column="patient"),
]


def split_names_case(ws: Workspace) -> Outcome:
    """A split column written ``train``/``Test``/``TEST``/``Val``: read ignoring case, so each image lands in
    the split its row names (a test image in training would be leakage)."""
    from medtransfer.datamodules import CSVDataset

    written = ["train", "train", "Test", "TEST", "Val", "train"] * 2
    wanted = {"train": "train", "test": "test", "val": "val"}
    root = _images(ws, 12)
    (root / "labels.csv").write_bytes(with_split([f"{i % 2},{split}" for i, split in enumerate(written)]))

    def splits_of_images() -> dict[str, str]:
        data = CSVDataset(root=str(root), split_column="split", image_size=16)
        data.setup("fit")
        return {image: split for split, source in data.sources().items() for image in source.ids}

    expected = {f"img{i:02d}.png": wanted[split.lower()] for i, split in enumerate(written)}
    return call(splits_of_images, check=lambda found: found == expected)


def copies_across_splits(carved: bool):
    """Two test images that are byte-identical copies of training images (one scan exported twice under two
    names): refused where the split column put them apart; carved splits keep each pair in one split."""

    def run(ws: Workspace) -> Outcome:
        from medtransfer.datamodules import CSVDataset

        root = _images(ws, 12)
        for i in (0, 1):
            shutil.copy(root / f"img{i:02d}.png", root / f"export{i}.png")
        written = ["train"] * 8 + ["val", "val", "test", "test"]
        listed = [f"img{i:02d}.png,{i % 2},{split}" for i, split in enumerate(written)]
        listed += [f"export{i}.png,{i},test" for i in (0, 1)]
        if carved:
            listed = [row.rsplit(",", 1)[0] for row in listed]
        header = "path,label" if carved else "path,label,split"
        (root / "labels.csv").write_text("\n".join([header, *listed]) + "\n")

        def split_of_each_copy() -> list[tuple[str, str]]:
            split = {} if carved else {"split_column": "split"}
            data = CSVDataset(root=str(root), image_size=16, val_fraction=0.25, test_fraction=0.25, **split)
            data.setup("fit")
            found = {image: name for name, source in data.sources().items() for image in source.ids}
            return [(found[f"img{i:02d}.png"], found[f"export{i}.png"]) for i in (0, 1)]

        return call(split_of_each_copy, check=lambda pairs: all(a == b for a, b in pairs))

    return run


def folder_listed_as_image(ws: Workspace) -> Outcome:
    """A row whose path is a folder (a scan series' folder, not an image): a named error when it is read."""
    from medtransfer.datamodules import CSVDataset

    root = _images(ws, 12)
    (root / "series").mkdir()
    (root / "labels.csv").write_bytes(rows(GOOD).replace(b"img05.png", b"series"))

    def read_all() -> int:
        data = CSVDataset(root=str(root), val_fraction=0.25, test_fraction=0.25, image_size=16)
        data.setup("fit")
        return sum(len(source.load_image(i)) > 0 for source in data.sources().values()
                   for i in range(len(source)))

    return call(read_all, check=lambda count: count == 11)


def _images(ws: Workspace, count: int):
    root = ws.root / "data"
    root.mkdir()
    for i in range(count):
        plain_png(root / f"img{i:02d}.png")
    return root


# --- class folders (ImageFolder) ----------------------------------------------------------------------------


def folder_case(name: str, group: str, layout: dict[str, int], expect: str, says: str = "",
                classes: tuple[str, ...] | None = None, counts: dict[str, list[int]] | None = None,
                in_suite: bool = True, **data) -> Case:
    """An ImageFolder root laid out as ``layout`` (folder -> number of images; ``.`` the root itself), read
    with val and test carved at 25% where their folders are absent; on success the classes must be
    ``classes`` and the images per split and class ``counts``."""

    def run(ws: Workspace) -> Outcome:
        from medtransfer.datamodules import ImageFolder

        root = ws.root / "data"
        for folder, count in layout.items():
            (root / folder).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                plain_png(root / folder / f"{i}.png")

        def load():
            dm = ImageFolder(root=str(root), val_fraction=0.25, test_fraction=0.25, image_size=16, **data)
            dm.setup("fit")
            return dm

        return call(load, check=lambda dm: (dm.task.class_names, per_split_counts(dm)) == (classes, counts))

    return Case(name, group, f"class folders: {name}", run, expect=expect, says=says, in_suite=in_suite)


def per_split_counts(dm) -> dict[str, list[int]]:
    """Images per class in each split."""
    sources = dm.sources()
    size = len(dm.task.class_names)
    return {split: np.bincount(np.asarray(sources[split].labels, np.int64), minlength=size).tolist()
            for split in SPLITS}


TWO = {"normal": 8, "sick": 8}
CARVED = {"train": [4, 4], "val": [2, 2], "test": [2, 2]}
FOLDERS = [
    folder_case("an empty class folder", "labels", {"normal": 8, "sick": 8, "cyst": 0}, "error",
                says=r"class 'cyst' \(train 0, val 0, test 0\) has no training images"),
    folder_case("a class folder only under test/", "labels",
                {"train/normal": 8, "train/sick": 8, "test/normal": 2, "test/sick": 2, "test/cyst": 2},
                "error", says=r"class 'cyst' \(train 0, val 0, test 2\) has no training images"),
    folder_case("a class folder only under val/", "labels",
                {"train/normal": 8, "train/sick": 8, "val/cyst": 2}, "error",
                says=r"class 'cyst' \(train 0, val 2, test 0\) has no training images"),
    folder_case("class folders Normal and normal", "labels", {"Normal": 4, "normal": 4, "sick": 8}, "error",
                says="differ only in case"),
    folder_case("class_names keeps an empty class", "labels", {"normal": 8, "sick": 8, "cyst": 0}, "success",
                classes=("normal", "sick", "cyst"),
                counts={"train": [4, 4, 0], "val": [2, 2, 0], "test": [2, 2, 0]},
                class_names=["normal", "sick", "cyst"]),
    folder_case("one class folder", "folder", {"normal": 8}, "error", says="expected at least two"),
    folder_case("images in the root, no class folders", "folder", {".": 8}, "error",
                says="found 0 class folder"),
    folder_case(".ipynb_checkpoints and __MACOSX beside the classes", "folder",
                {**TWO, ".ipynb_checkpoints": 2, "__MACOSX/normal": 2}, "success",
                classes=("normal", "sick"), counts=CARVED),
    folder_case("patients' subfolders inside the class folders", "folder",
                {"normal/p1": 4, "normal/p2": 4, "sick/p3": 4, "sick/p4": 4}, "success",
                classes=("normal", "sick"), counts=CARVED),
    folder_case("split folders Train/ and Test/ in capitals", "folder",
                {"Train/normal": 8, "Train/sick": 8, "Test/normal": 3, "Test/sick": 3}, "success",
                classes=("normal", "sick"), counts={"train": [6, 6], "val": [2, 2], "test": [3, 3]}),
    folder_case("split folders Training/ and Testing/", "folder",
                {"Training/normal": 8, "Training/sick": 8, "Testing/normal": 3, "Testing/sick": 3}, "error",
                says="'Testing'.*'Training'.* split"),
]


# --- the images in the folders -----------------------------------------------------------------------------


def mixed_sizes_and_modes(ws: Workspace) -> Outcome:
    """fit + test on a folder whose images are 1 x 1 RGB, 500 x 30 grey, 1-bit, grey with alpha, 16-bit and
    float TIFF beside the usual PNGs: every image read and used."""
    root = image_folder(ws.root / "data", per_class=7)
    rng = np.random.default_rng(0)
    odd = {
        "lesion/dot.png": Image.fromarray(rng.integers(0, 256, (1, 1, 3), np.uint8)),
        "normal/strip.png": Image.fromarray(rng.integers(0, 256, (30, 500), np.uint8)),
        "normal/bilevel.png": Image.fromarray(rng.integers(0, 2, (20, 20)).astype(bool)),
        "lesion/grey_alpha.png": Image.fromarray(rng.integers(0, 256, (20, 20, 2), np.uint8), "LA"),
        "lesion/sixteen.tif": Image.fromarray(rng.integers(0, 65535, (33, 17)).astype(np.uint16)),
        "normal/float.tif": Image.fromarray(rng.random((25, 25)).astype(np.float32)),
    }
    for name, image in odd.items():
        image.save(root / name)
    runs = ws.root / "runs"
    run_dir = runs / "tiny" / "version_0"
    return cli(["fit", *folder_args(root, runs)], check=lambda: every_image_used(run_dir, 20))


def training_batch_of_one(ws: Workspace) -> Outcome:
    """6 training images in batches of 5 at 32 px: the last batch holds one image, which the backbone's
    BatchNorm cannot train on (its last maps are 1 x 1)."""
    runs = ws.root / "runs"
    return cli(["fit", *folder_args(image_folder(ws.root / "data", per_class=6), runs, batch_size=5)])


def one_class_split(split: str) -> Case:
    """A binary fit whose ``split`` folder holds one class: on the val split it "chose" its first epoch on a
    NaN AUROC and tested it as the best, exit 0; on the test split it trained to a NaN AUROC."""
    other = "test" if split == "val" else "val"

    def run(ws: Workspace) -> Outcome:
        root = ws.root / "data"
        for folder, count in {"train/lesion": 8, "train/normal": 8, f"{split}/normal": 4,
                              f"{other}/lesion": 2, f"{other}/normal": 2}.items():
            (root / folder).mkdir(parents=True)
            for i in range(count):
                plain_png(root / folder / f"{i}.png")
        runs = ws.root / "runs"
        return cli(["fit", *folder_args(root, runs)])

    return Case(f"a {split} split of one class", "labels", f"binary fit, {split}/ holds normal only", run,
                expect="error", says=f"the {split} split has no 'lesion' image \\(lesion 0, normal 4\\)")


def cases() -> list[Case]:
    return [
        *LABEL_TABLES,
        *MORE_TABLES,
        Case("split column Test/TEST/Val", "table", "labels.csv: split names in capitals", split_names_case,
             expect="success"),
        Case("a folder listed as an image", "table", "labels.csv: a row's path is a folder",
             folder_listed_as_image, expect="error", says="series"),
        Case("a test image copied from train", "table", "labels.csv: two test rows are copies of training "
             "images", copies_across_splits(carved=False), expect="error",
             says=r"2 image\(s\) have a byte-identical copy in another split: 'img00.png' \(train\) = "
                  r"'export0.png' \(test\)"),
        Case("copies in a pool to carve", "table", "labels.csv without splits: two images listed twice under "
             "two names", copies_across_splits(carved=True), expect="success"),
        *FOLDERS,
        one_class_split("val"),
        one_class_split("test"),
        Case("fit on images of every size and mode", "image", "1x1, 500x30 grey, 1-bit, LA, 16-bit and float "
             "TIFF in one folder", mixed_sizes_and_modes, expect="success"),
        Case("a last training batch of one image", "image", "6 training images, batch_size 5, 32 px",
             training_batch_of_one, expect="error", says="a training batch of 1 image.* BatchNorm"),
    ]
