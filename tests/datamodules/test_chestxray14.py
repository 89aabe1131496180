"""NIH ChestX-ray14 from its entries table, official lists and split image folders."""

from __future__ import annotations

import pytest

from medtransfer.datamodules import ChestXray14
from medtransfer.datamodules.chestxray14 import FINDINGS
from medtransfer.datamodules.errors import BadLabelError, DatasetLayoutError


def test_official_test_list_and_patient_carved_validation(chestxray14_root, check_batches):
    dm = ChestXray14(root=str(chestxray14_root), val_fraction=0.25, image_size=32, batch_size=4)
    sources = dm.sources()
    assert len(sources["test"]) == 9 and len(sources["train"]) + len(sources["val"]) == 27
    groups = [set(s.groups.tolist()) for s in sources.values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert dm.task.kind == "multilabel" and dm.task.class_names == FINDINGS
    labels = dict(zip(sources["test"].ids, sources["test"].labels.tolist(), strict=True))
    effusion_and_atelectasis = labels["00000010_002.png"]  # FINDINGS_ROWS[0] is "No Finding"
    assert effusion_and_atelectasis == [0.0] * 14
    check_batches(dm, 32)


def test_findings_are_parsed_and_rgba_becomes_grey(chestxray14_root):
    dm = ChestXray14(root=str(chestxray14_root), val_fraction=0.25)
    pool = {i: (s, k) for s in dm.sources().values() for k, i in enumerate(s.ids)}
    source, index = pool["00000001_001.png"]  # "Atelectasis|Effusion"
    assert [FINDINGS[c] for c in range(14) if source.labels[index][c]] == ["Atelectasis", "Effusion"]
    source, index = pool["00000002_000.png"]  # the RGBA image
    image = source.load_image(index)
    assert image.shape == (36, 44, 3) and (image[..., 0] == image[..., 2]).all()


def test_single_images_folder_and_2017_table(chestxray14_root):
    images = chestxray14_root / "images"
    images.mkdir()
    for part in ("images_001", "images_002"):
        for path in (chestxray14_root / part / "images").iterdir():
            path.rename(images / path.name)
        (chestxray14_root / part / "images").rmdir()
        (chestxray14_root / part).rmdir()
    (chestxray14_root / "Data_Entry_2017_v2020.csv").rename(chestxray14_root / "Data_Entry_2017.csv")
    assert len(ChestXray14(root=str(chestxray14_root)).sources()["test"]) == 9


def test_bad_inputs(chestxray14_root):
    (chestxray14_root / "test_list.txt").write_text("00000012_000.png\n99999999_000.png\n")
    with pytest.raises(DatasetLayoutError, match="1 images of .*test_list.txt are not in the entries table"):
        ChestXray14(root=str(chestxray14_root)).sources()
    (chestxray14_root / "test_list.txt").write_text("00000012_000.png\n")
    table = chestxray14_root / "Data_Entry_2017_v2020.csv"
    table.write_text(table.read_text().replace("Mass|Nodule", "Mass|Nodul"))
    with pytest.raises(BadLabelError, match=r"Data_Entry_2017_v2020.csv row \d+: unknown finding 'Nodul'"):
        ChestXray14(root=str(chestxray14_root)).sources()
    table.unlink()
    with pytest.raises(DatasetLayoutError, match=r"Data_Entry_2017_v2020.csv   <- missing"):
        ChestXray14(root=str(chestxray14_root)).sources()


def test_a_duplicated_image_index_is_named_with_its_rows(chestxray14_root):
    table = chestxray14_root / "Data_Entry_2017_v2020.csv"
    lines = table.read_text().splitlines()
    # file rows 2 and 11 hold 00000001_000.png and 00000004_000.png; both come again at the end, the second
    # with other findings
    again = "00000004_000.png,Mass,0,4,58,M,PA,2682,2749,0.143,0.143"
    table.write_text("\n".join([*lines, lines[1], again]) + "\n")
    with pytest.raises(BadLabelError) as raised:
        ChestXray14(root=str(chestxray14_root)).sources()
    message = str(raised.value)
    assert f"{table} lists 2 image(s) in more than one row of 'Image Index'" in message
    assert "00000001_000.png (rows 2, 38)" in message and "00000004_000.png (rows 11, 39)" in message
    assert "expected one row per image" in message
