"""Moving a batch to the device moves its tensors and leaves the id list untouched (it is not walked)."""

from __future__ import annotations

import torch

from medtransfer.datamodules import SyntheticMedical


def test_tensors_move_and_ids_stay_the_same_object():
    ids = ["a", "b"]
    batch = {"features": [torch.ones(2, 3), torch.zeros(2, 4)], "label": torch.tensor([0, 1]), "id": ids}
    moved = SyntheticMedical().transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert moved["id"] is ids
    assert [f.device.type for f in moved["features"]] == ["meta", "meta"]
    assert moved["label"].device.type == "meta"
    assert [tuple(f.shape) for f in moved["features"]] == [(2, 3), (2, 4)]
