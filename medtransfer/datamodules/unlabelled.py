"""A plain folder of images without labels, for self-supervised pretraining on your own images."""

from __future__ import annotations

import numpy as np

from .base import MedicalDataModule
from .config_values import check_flag
from .errors import DatasetLayoutError, check_layout, describe_folder
from .images import FileSource, iter_image_files, sample_id
from .sources import Source


class UnlabelledImages(MedicalDataModule):
    """Unlabelled images for self-supervised pretraining: every image under ``root`` is a training image.

    Every image under ``root`` (searched recursively, in sorted order; dot files and ``__MACOSX`` ignored) is
    a training image. There are no labels, so there is no task, no validation or test split and no kNN
    monitor: only ``SSLPretrain`` trains on it. Ids are the paths relative to ``root``.

    Args:
        root: the folder of images (.png, .jpg, .jpeg, .bmp, .tif).
        grey: decode images as grey (X-rays, CT), repeated to 3 channels.
        skip_corrupt: leave out unreadable images (logged and counted) instead of failing.
        augmentation: the images' modality, which picks the view augmentation of pretraining: ``natural``,
            ``chest_xray``, ``histology``, ``fundus`` or ``none`` (crops and intensity only).
        image_size, batch_size, num_workers, ...: see ``MedicalDataModule``.
    """

    default_augmentation = "natural"
    task = None

    def __init__(
        self,
        root: str,
        grey: bool = False,
        skip_corrupt: bool = False,
        image_size: int = 224,
        **kwargs,
    ) -> None:
        super().__init__(image_size=image_size, **kwargs)
        check_flag("grey", grey)
        check_flag("skip_corrupt", skip_corrupt)
        self.root = root
        self.grey = grey
        self.skip_corrupt = skip_corrupt

    def build_sources(self) -> dict[str, Source]:
        root = check_layout(self.name, self.root, [], "your own images: any folder of image files")
        paths = list(iter_image_files(root))
        if not paths:
            raise DatasetLayoutError(
                f"{self.name}: no images (.png, .jpg, .jpeg, .bmp, .tif) under {root}; it holds: "
                f"{describe_folder(root)}"
            )
        ids = [sample_id(path.relative_to(root)) for path in paths]
        train = FileSource(paths, np.zeros(len(paths), dtype=np.int64), ids, grey=self.grey,
                           skip_corrupt=self.skip_corrupt, draft_size=2 * self.image_size)
        empty = FileSource([], np.zeros(0, dtype=np.int64), [])
        return {"train": train, "val": empty, "test": empty}

    def val_dataloader(self) -> list:
        """No validation split: images without labels give the kNN monitor nothing to score."""
        return []

    def test_dataloader(self):
        raise DatasetLayoutError(
            f"{self.name} holds unlabelled training images only: there is nothing to test. Evaluate the "
            "pretrained backbone on a labelled dataset (model.init_args.checkpoint of a linear probe)"
        )

    def predict_dataloader(self):
        return self.test_dataloader()

    def data_fingerprint(self) -> dict:
        return super().data_fingerprint() | {"grey": self.grey}
