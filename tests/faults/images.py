"""Image files of every kind a decoder trips on, each with the pixels medtransfer must return (PIL's reference
conversion) or ``None`` where the file is unreadable and must be a named error (or skipped)."""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SIZE = (40, 24)  # width x height: not square, so a missed EXIF rotation shows in the shape


def _rgb(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    gradient = np.linspace(0, 255, SIZE[0], dtype=np.float64)[None, :, None]
    noise = rng.integers(0, 60, (SIZE[1], SIZE[0], 3))
    return Image.fromarray(np.clip(gradient + noise, 0, 255).astype(np.uint8), "RGB")


def _reference(path: Path) -> np.ndarray:
    """PIL's own reading: EXIF orientation applied, then converted to RGB."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def sixteen_bit_reference(values: np.ndarray) -> np.ndarray:
    """The documented 16-bit rule (docs/reliability.md): ``round(v * 255 / 65535)``, grey repeated to RGB."""
    grey = np.floor(values.astype(np.float64) * 255.0 / 65535.0 + 0.5).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def cmyk_jpeg(path: Path) -> np.ndarray:
    _rgb(1).convert("CMYK").save(path, "JPEG", quality=95)
    return _reference(path)


def progressive_jpeg(path: Path) -> np.ndarray:
    _rgb(2).save(path, "JPEG", quality=90, progressive=True)
    return _reference(path)


def sixteen_bit_png(path: Path) -> np.ndarray:
    values = np.linspace(0, 65535, SIZE[0] * SIZE[1]).reshape(SIZE[1], SIZE[0]).astype(np.uint16)
    Image.fromarray(values).save(path, "PNG")
    with Image.open(path) as image:
        assert image.mode.startswith("I"), image.mode
    return sixteen_bit_reference(values)


def palette_png(path: Path) -> np.ndarray:
    _rgb(3).quantize(16).save(path, "PNG")
    return _reference(path)


def palette_png_transparent(path: Path) -> np.ndarray:
    image = _rgb(4).quantize(16)
    image.save(path, "PNG", transparency=0)
    return _reference(path)


def exif_rotated_jpeg(path: Path) -> np.ndarray:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    _rgb(5).save(path, "JPEG", quality=95, exif=exif.tobytes())
    reference = _reference(path)
    assert reference.shape[:2] == (SIZE[0], SIZE[1])  # the upright photo is portrait
    return reference


def rgba_png(path: Path) -> np.ndarray:
    image = _rgb(6).convert("RGBA")
    image.putalpha(128)
    image.save(path, "PNG")
    return _reference(path)


def zero_byte(path: Path) -> None:
    path.write_bytes(b"")


def truncated_jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    _rgb(7).save(buffer, "JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def truncated_png(path: Path) -> None:
    buffer = io.BytesIO()
    _rgb(8).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def not_an_image(path: Path) -> None:
    path.write_text("id,label\n1,0\n")  # a CSV saved with an image's name


def symlink_loop(path: Path) -> None:
    other = path.with_name("loop-b" + path.suffix)
    other.symlink_to(path.name)
    path.symlink_to(other.name)


def plain_png(path: Path) -> np.ndarray:
    """A PNG whose pixels depend on its name and two folders above: two files are never byte-identical
    copies (those are refused across splits the user made, and kept in one carved split)."""
    _rgb(zlib.crc32(os.fsencode("/".join(path.parts[-3:])))).save(path, "PNG")
    return _reference(path)


VALID: dict[str, tuple[str, Callable[[Path], np.ndarray]]] = {
    "CMYK JPEG": (".jpg", cmyk_jpeg),
    "progressive JPEG": (".jpg", progressive_jpeg),
    "16-bit grey PNG": (".png", sixteen_bit_png),
    "palette PNG": (".png", palette_png),
    "palette PNG with transparency": (".png", palette_png_transparent),
    "EXIF-rotated JPEG": (".jpg", exif_rotated_jpeg),
    "RGBA PNG": (".png", rgba_png),
}
BROKEN: dict[str, tuple[str, Callable[[Path], None]]] = {
    "zero-byte file": (".png", zero_byte),
    "truncated JPEG": (".jpg", truncated_jpeg),
    "truncated PNG": (".png", truncated_png),
    "text file named .png": (".png", not_an_image),
    "symlink loop": (".png", symlink_loop),
}
