"""How an image file's pixels become a model's input: one set of rules for the images a model trains on
(training/data.py) and the images it is sent (service/http/images.py), so that it sees both alike."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

# Modes that carry no colour: bilevel, grey, grey with alpha, 16- and 32-bit grey, float. A palette has colour
# when one of its entries does.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
PALETTE_MODES = frozenset({"P", "PA"})
ROTATED = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


def has_colour(image: Image.Image) -> bool:
    """Whether an opened image has colour, from its header alone (mode and palette), before the pixels are decoded:
    a palette image of grey entries only (a grey PNG saved with a palette) is grey."""
    if image.mode in PALETTE_MODES:
        palette = image.getpalette("RGB") or []
        return any(palette[i] != palette[i + 1] or palette[i] != palette[i + 2] for i in range(0, len(palette), 3))
    return image.mode not in GREY_MODES


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) once `upright` has turned the image, read from the header."""
    width, height = image.size
    orientation = image.getexif().get(0x0112) if "exif" in image.info else None
    return (height, width) if orientation in ROTATED else (width, height)


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (phone photos store their rotation there); load it first."""
    return ImageOps.exif_transpose(image) if "exif" in image.info else image


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Grey ("L") for one channel, else "RGB": 16-bit values scaled to 8 bits (not clipped), transparent pixels on
    black (the background of the MNIST-style digits the models know)."""
    mode = "L" if channels == 1 else "RGB"
    key = image.info.get("transparency")  # a colour key (PNG's tRNS chunk): pixels of that value are transparent
    if image.mode == mode and key is None:  # the usual case: Pillow's convert would still copy the pixels
        return image
    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image, dtype=np.float64)
        scaled = (pixels / 257.0).round().clip(0, 255).astype(np.uint8)
        if isinstance(key, int):
            scaled[pixels == key] = 0  # on black, as below
        image = Image.fromarray(scaled)
    elif key is not None and image.mode in ("L", "RGB", "P"):
        image = image.convert("RGBA")  # the key becomes alpha 0
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (0, 0, 0, 255)), image)
    return image.convert(mode)
