"""A class-folder copy of CIFAR-10 (`train/<class>/*.jpg`) listed, checked and decoded: a damaged file is named."""
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .io import UserError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGES = {".jpg", ".jpeg", ".png"}
OTHER_IMAGES = {".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".jp2", ".heic", ".avif"}  # refused, not skipped


def image_files(split_dir):
    """[(label, path)] in class order; notes and hidden files (.ipynb_checkpoints, ._0001.jpg) are not data."""
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if found != sorted(CLASSES):
        raise UserError(f"{split_dir} must hold exactly the 10 CIFAR-10 class folders {list(CLASSES)}; found "
                        f"{found}: point --data at a whole copy")
    files = []
    for label, name in enumerate(CLASSES):
        paths = sorted(p for p in (split_dir / name).iterdir() if not p.name.startswith("."))
        for path in paths:
            if path.suffix.lower() in OTHER_IMAGES:
                raise UserError(f"{path}: only JPEG and PNG images are read; convert it or remove it")
        images = [p for p in paths if p.suffix.lower() in IMAGES]
        if not images:
            raise UserError(f"class folder {split_dir / name} holds no JPEG or PNG image: point --data at a whole copy")
        files += [(label, p) for p in images]
    return files


def read_images(paths):
    """Decoder warnings go to fd 2, out of Python's reach: caught in a file, each is an error naming its image."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            images = []
            for path in paths:
                images.append(read_image(path))
                if os.fstat(sink.fileno()).st_size:
                    sink.seek(0)
                    warning = " ".join(sink.read().decode(errors="replace").split())
                    raise UserError(f"image {path} is damaged (its decoder says: {warning}): replace or remove it")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return np.stack(images)


def read_image(path):
    """OpenCV decodes these JPEGs 4x faster than PIL. A file cut short is refused: libjpeg would fill it with grey."""
    raw = Path(path).read_bytes()
    end = {b"\xff\xd8": b"\xff\xd9", b"\x89P": b"IEND\xaeB`\x82"}.get(raw[:2])  # JPEG's EOI, PNG's IEND chunk
    if end is None or not raw.rstrip(b"\x00").endswith(end):
        raise UserError(f"image {path} is damaged (cut short, or not a JPEG/PNG file): replace or remove it")
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"cannot read image {path}: not a readable JPEG/PNG file; replace or remove it")
    if image.shape != (32, 32, 3):
        raise UserError(f"image {path} is {image.shape[1]}x{image.shape[0]}, not 32x32: replace or remove it")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
