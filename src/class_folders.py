"""A class-folder copy of CIFAR-10 (`train/<class>/*.jpg`, as the JPEG copy): its files listed and
checked, and its images decoded, so that a damaged file is an error that names it."""
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .harness.errors import UserError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png"}
OTHER_IMAGES = {".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jp2", ".heic", ".heif", ".avif",
                ".jxl", ".ico", ".svg", ".exr", ".hdr", ".dib", ".pnm", ".sr", ".ras"}

WHOLE_COPY = [("--data", "point --data at a whole copy"), (None, "use a whole copy")]


def image_files(split_dir):
    """[(label, path)] of a class-folder split, checked (the ten classes, none empty), in class order."""
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))  # not data
    if sorted(found) != sorted(CLASSES):
        raise UserError(f"{split_dir} must hold exactly the 10 CIFAR-10 class folders "
                        f"{list(CLASSES)}; found {found}", WHOLE_COPY)
    files = []
    for label, name in enumerate(CLASSES):
        paths = sorted(images_in(split_dir / name))
        if not paths:
            raise UserError(f"class folder {split_dir / name} holds no JPEG or PNG image", WHOLE_COPY)
        files += [(label, p) for p in paths]
    return files


def images_in(folder):
    """The images of a class folder; other files (notes, hidden files) are ignored, but an image this
    project cannot read, or a name that is not a regular file, is an error: nothing is skipped silently."""
    with os.scandir(folder) as entries:
        yield from _checked(entries)


def _checked(entries):
    for entry in entries:
        if entry.name.startswith("."):  # hidden ones (.ipynb_checkpoints, macOS's ._0001.jpg) are not data
            continue
        try:
            folder, regular = entry.is_dir(), entry.is_file()
        except OSError:  # a link that points at itself, say
            folder = regular = False
        if folder:
            raise UserError(f"{entry.path}: a folder inside a class folder; its images would not be read, so move "
                            f"them up or remove it")
        suffix = Path(entry.name).suffix.lower()
        if suffix in OTHER_IMAGES:
            raise UserError(f"{entry.path}: only JPEG (.jpg, .jpeg, .jpe, .jfif) and PNG images are read; convert it "
                            f"or remove it")
        if suffix in IMAGE_SUFFIXES:
            if not regular:
                raise UserError(f"{entry.path} is not a regular file (a folder, pipe or broken link?): remove it")
            yield Path(entry.path)


def read_images(paths):
    """One uint8 array of the images. libjpeg and libpng print their warnings on the process's stderr
    (file descriptor 2), out of Python's reach: while decoding, it goes to a temporary file, and a
    warning makes the image that caused it an error naming the file."""
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
    """OpenCV decodes these small JPEGs about 4x faster than PIL; grayscale and RGBA files come back
    as 3-channel images. A file cut short is refused before decoding: libjpeg would fill the rest with
    grey and train on it, with no more than a warning."""
    raw = Path(path).read_bytes()
    end = {b"\xff\xd8": b"\xff\xd9", b"\x89P": b"IEND\xaeB`\x82"}.get(raw[:2])  # JPEG's EOI, PNG's IEND chunk
    if end is None or not raw.rstrip(b"\x00").endswith(end):
        raise UserError(f"image {path} is damaged (cut short, or not a JPEG/PNG file): replace or remove it")
    try:
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # e.g. a header that claims more pixels than OpenCV decodes
        image = None
    if image is None:
        raise UserError(f"cannot read image {path}: not a readable JPEG/PNG file; replace or remove it")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape != (32, 32, 3):
        raise UserError(f"image {path} is {image.shape[1]}x{image.shape[0]}, expected 32x32")
    return image
