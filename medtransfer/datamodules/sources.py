"""Sources: the raw samples of one split (image, label, id, patient), before any transform.

Every datamodule reads its native layout into one ``Source`` per split; everything downstream (label
fractions, transforms, samplers, feature stores) works on sources and never on a dataset's own format.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

import numpy as np

DIGEST_BYTES = 16


class Source(ABC):
    """One split of a dataset: ``ids``, ``labels`` (``N`` ints, or ``N x C`` floats for multilabel) and
    optional ``groups`` (patient ids, so that label fractions and carved splits never separate one patient's
    images)."""

    ids: list[str]
    labels: np.ndarray
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @abstractmethod
    def load_image(self, index: int) -> np.ndarray:
        """The image at ``index`` as ``H x W x 3`` uint8 (grey images repeated to three channels)."""

    def load_pixels(self, index: int) -> np.ndarray:
        """The image at ``index`` as decoded, for the training pipeline: ``H x W`` uint8 for grey images
        (resized and augmented on one channel and repeated to three only in the batch, where it costs
        nothing), else ``H x W x 3``."""
        return self.load_image(index)

    def subset(self, indices: np.ndarray) -> SubsetSource:
        return SubsetSource(self, np.asarray(indices, dtype=np.int64))

    def size_keys(self) -> list | None:
        """A key per sample that byte-identical images share and that is cheap to get (a file's size), for
        finding copies (``copies``); None when the source cannot give one cheaply (its images are then never
        compared)."""
        return None

    def content_key(self, index: int, whole: bool) -> str | bytes | None:
        """A digest of the bytes of the image at ``index``: of its ends (``whole`` False: cheaper, and enough
        to tell most images apart) or of all of it; None when it cannot be read."""
        return None

    def pixel_stamps(self) -> list[str | None] | None:
        """Per sample, a short text that changes when its pixels change (a file's size and modification
        time, an in-memory image's digest), so that a feature store is keyed by the pixels it was extracted
        from and not only by ids and labels; None when the source has none."""
        return None


class SubsetSource(Source):
    """A view on some rows of another source, used for carved splits and label fractions."""

    def __init__(self, parent: Source, indices: np.ndarray) -> None:
        self.parent = parent
        self.indices = indices
        self.ids = [parent.ids[i] for i in indices]
        self.labels = parent.labels[indices]
        self.groups = None if parent.groups is None else parent.groups[indices]

    def load_image(self, index: int) -> np.ndarray:
        return self.parent.load_image(int(self.indices[index]))

    def load_pixels(self, index: int) -> np.ndarray:
        return self.parent.load_pixels(int(self.indices[index]))

    def size_keys(self) -> list | None:
        keys = self.parent.size_keys()
        return None if keys is None else [keys[i] for i in self.indices]

    def content_key(self, index: int, whole: bool) -> str | bytes | None:
        return self.parent.content_key(int(self.indices[index]), whole)

    def pixel_stamps(self) -> list[str | None] | None:
        stamps = self.parent.pixel_stamps()
        return None if stamps is None else [stamps[i] for i in self.indices]


class ArraySource(Source):
    """Images already in memory as ``N x H x W`` or ``N x H x W x 3`` uint8 (MedMNIST, synthetic data)."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, ids: list[str], groups: np.ndarray | None = None
    ) -> None:
        if len(images) != len(labels) or len(images) != len(ids):
            raise ValueError(
                f"{len(images)} images, {len(labels)} labels and {len(ids)} ids differ in number"
            )
        self.images = images
        self.labels = labels
        self.ids = list(ids)
        self.groups = groups
        self._digests: list[bytes] | None = None

    def load_image(self, index: int) -> np.ndarray:
        # a copy: the array may be a read-only memory map, and transforms may write into their input
        return as_rgb_uint8(np.array(self.images[index]))

    def size_keys(self) -> list[bytes]:
        """Each image's pixel digest: in memory, hashing is as cheap as any other key, and exact."""
        if self._digests is None:
            self._digests = [hashlib.blake2b(np.ascontiguousarray(image).tobytes(),
                                             digest_size=DIGEST_BYTES).digest() for image in self.images]
        return self._digests

    def content_key(self, index: int, whole: bool) -> bytes:
        return self.size_keys()[index]

    def pixel_stamps(self) -> list[str]:
        """The pixel digests: exact, and already computed for the copy check."""
        return [digest.hex() for digest in self.size_keys()]


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """``H x W``, ``H x W x 1``, ``H x W x 3`` or ``H x W x 4`` to ``H x W x 3`` uint8
    (docs/architecture.md: grey is repeated)."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an H x W (x 1/3/4) image, got shape {tuple(image.shape)}")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)
