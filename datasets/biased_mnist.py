"""Biased-MNIST (Bahng et al., 2020, ReBias; the synthetic data of IRENE): MNIST on a coloured background.

Data: the four MNIST files in torchvision's layout,
``<data root>/biased_mnist/MNIST/raw/`` (train-images-idx3-ubyte,
train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte), each
gzipped (``.gz``, what ``files`` declares, verified by SHA-256 and downloaded
from torchvision's mirror) or plain (as torchvision extracts them; a plain file
is read when its ``.gz`` is absent, and then is not verified). The idx format
is read with numpy: a big-endian header (two zero bytes, type 0x08 = unsigned
byte, the number of dimensions, each dimension as a 32-bit integer), then the
bytes. The SHA-256 values are those of the original archives, as published by
many independent projects (torchvision itself declares only MD5).

Colouring, as in ReBias's ``ColourBiasedMNIST`` (the code IRENE uses): the
strokes are binarised (every non-zero pixel becomes white) and the background
(every zero pixel) takes one of ten colours, ReBias's palette. The palette and
the colouring are those of :mod:`datasets.colored_digits`. ``x`` is float32,
shape (n, 3, 28, 28), in [-1, 1] ((image - 0.5) / 0.5). Target ``y`` = the
digit; private attribute ``s`` = the colour index (10 classes each).

Bias: in ``train`` an image takes its digit's colour (colour index = digit)
with probability ``rho`` (option; 0.99 by default, or 0.995, 0.997, 0.999, the
values of the paper), else one of the nine other colours uniformly. ReBias fixes
the counts per digit (exactly floor(n * rho) aligned images); here each image
is an independent draw, with the same expected proportions. In ``val``,
``probe`` and ``test`` the colour is independent of the digit: within each
digit the colours are dealt round-robin to the shuffled images, so every
(digit, colour) count is the same up to one image.

Splits (seeded by ``data_seed``): MNIST's 60,000 training images are shuffled
into ``train`` (50,000, biased) and ``val`` (10,000, recoloured unbiased);
MNIST's 10,000 test images into ``probe`` (5,000) and ``test`` (5,000). Files of
other sizes are cut at the same fractions (5/6 and 1/2).

Defaults: encoder ``biased_mnist_cnn`` (ReBias's SimpleConvNet), batch size
100, 80 epochs. IRENE trains 100 epochs with learning-rate steps at 40 and 60;
80 keeps the benchmark's budget and passes both steps of that schedule.

Memory: the four splits hold 70,000 x 3 x 28 x 28 float32 values, about 660 MB
(train alone about 470 MB); colouring works in chunks, so the peak stays near
that.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import UserError
from bench.params import Param
from datasets.base import Data, DataFile, Dataset, DatasetSpec, Split, register
from datasets.colored_digits import MAX_GREY, NUM_COLOURS, NUM_DIGITS, biased_colours, colourise
from datasets.download import MISSING, PRESENT, file_status

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
RAW = "MNIST/raw/"
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
SHA256 = {
    TRAIN_IMAGES: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    TRAIN_LABELS: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    TEST_IMAGES: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    TEST_LABELS: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
SIDE = 28
TRAIN_FRACTION = 5 / 6  # 50,000 of MNIST's 60,000 training images
PROBE_FRACTION = 1 / 2  # 5,000 of its 10,000 test images
CHUNK = 10_000
UNSIGNED_BYTE = 0x08


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of unsigned bytes (gzipped when its name ends in .gz) as a uint8 array.

    Any problem (a truncated file, a wrong header) is a UserError naming the file.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise UserError(f"biased_mnist: cannot decompress {path}: {error}") from None
    except OSError as error:
        raise UserError(f"biased_mnist: cannot read {path}: {error.strerror or error}") from None
    header = 4 + 4 * ndim
    if len(raw) < header or raw[0] != 0 or raw[1] != 0:
        raise UserError(f"biased_mnist: {path} is not an idx file (bad magic number)")
    if raw[2] != UNSIGNED_BYTE or raw[3] != ndim:
        raise UserError(
            f"biased_mnist: {path} holds type 0x{raw[2]:02x} in {raw[3]} dimensions, "
            f"expected unsigned bytes (0x08) in {ndim}"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise UserError(
            f"biased_mnist: {path} declares shape {shape} ({expected} bytes) but holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def raw_path(folder: Path, stem: str) -> Path:
    """The .gz file when present (it is the verified one), else the plain one."""
    gz = folder / RAW / f"{stem}.gz"
    return gz if gz.is_file() or not (folder / RAW / stem).is_file() else folder / RAW / stem


def read_part(folder: Path, images_stem: str, labels_stem: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(raw_path(folder, images_stem), 3)
    labels_path = raw_path(folder, labels_stem)
    labels = read_idx(labels_path, 1)
    if images.shape[1:] != (SIDE, SIDE):
        raise UserError(f"biased_mnist: {raw_path(folder, images_stem)} holds {images.shape[1:]} images, expected 28x28")
    if len(images) != len(labels):
        raise UserError(
            f"biased_mnist: {len(images)} images in {images_stem} but {len(labels)} labels in {labels_stem}"
        )
    if len(labels) and labels.max() >= NUM_DIGITS:
        raise UserError(f"biased_mnist: {labels_path} holds label {labels.max()}, expected 0..9")
    return images, labels.astype(np.int64)


def balanced_colours(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colours independent of the digit: within each digit, dealt round-robin to shuffled images."""
    colours = np.empty(len(digits), dtype=np.int64)
    for digit in np.unique(digits):
        members = rng.permutation(np.flatnonzero(digits == digit))
        offset = rng.integers(NUM_COLOURS)  # so that small classes do not all favour colour 0
        colours[members] = (np.arange(len(members)) + offset) % NUM_COLOURS
    return colours


def coloured_split(images: np.ndarray, digits: np.ndarray, colours: np.ndarray) -> Split:
    """Binarised strokes in white on the colour's background, float32 in [-1, 1], built in chunks."""
    x = np.empty((len(images), 3, SIDE, SIDE), dtype=np.float32)
    for start in range(0, len(images), CHUNK):
        stop = start + CHUNK
        strokes = np.where(images[start:stop] > 0, np.float32(MAX_GREY), np.float32(0.0))
        x[start:stop] = colourise(strokes, colours[start:stop])
    return Split(torch.from_numpy(x), torch.from_numpy(digits.copy()), torch.from_numpy(colours.copy()))


@register
class BiasedMnist(Dataset):
    name = "biased_mnist"
    description = "MNIST on a background coloured by digit with probability rho in train (Biased-MNIST)"
    options = {
        "rho": Param(
            0.99, "P(colour = digit's colour) in train", choices=(0.99, 0.995, 0.997, 0.999)
        ),
        "data_seed": Param(0, "seed of the splits and of every colour draw"),
    }
    files = tuple(
        DataFile(f"{RAW}{stem}.gz", SHA256[stem], f"{MIRROR}{stem}.gz")
        for stem in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
    )

    @classmethod
    def file_statuses(cls, data_root: Path) -> list[tuple[DataFile, str]]:
        """Like ``file_status``, but a missing .gz whose plain (extracted) file exists counts as present."""
        folder = cls.folder(data_root)
        out = []
        for data_file, status in file_status(folder, cls.files):
            plain = data_file.name.removesuffix(".gz")
            if status == MISSING and (folder / plain).is_file():
                out.append((DataFile(plain), PRESENT))
            else:
                out.append((data_file, status))
        return out

    @classmethod
    def prepare(cls, data_root: Path, download: bool = True) -> None:
        """As :meth:`Dataset.prepare`, but a .gz that is absent while its extracted file is there is not needed."""
        import os

        from datasets.download import ensure_files

        download = download and os.environ.get("BENCH_OFFLINE", "") in ("", "0")  # as Dataset.prepare
        folder = cls.folder(data_root)

        def extracted_only(data_file: DataFile) -> bool:
            plain = folder / data_file.name.removesuffix(".gz")
            return plain.is_file() and not (folder / data_file.name).is_file()

        needed = [f for f in cls.files if not extracted_only(f)]
        ensure_files(folder, needed, dataset=cls.name, download=download)

    def load(self, options: dict[str, Any], data_root: Path) -> Data:
        folder = self.folder(data_root)
        train_images, train_digits = read_part(folder, TRAIN_IMAGES, TRAIN_LABELS)
        test_images, test_digits = read_part(folder, TEST_IMAGES, TEST_LABELS)
        rng = np.random.default_rng(options["data_seed"])
        order = rng.permutation(len(train_digits))
        cut = int(round(TRAIN_FRACTION * len(order)))
        train_index, val_index = np.sort(order[:cut]), np.sort(order[cut:])
        order = rng.permutation(len(test_digits))
        cut = int(round(PROBE_FRACTION * len(order)))
        probe_index, test_index = np.sort(order[:cut]), np.sort(order[cut:])
        if min(len(train_index), len(val_index), len(probe_index), len(test_index)) == 0:
            raise UserError(
                f"biased_mnist: {len(train_digits)} training and {len(test_digits)} test images are too few to split"
            )

        train_digit = train_digits[train_index]
        splits = {"train": coloured_split(
            train_images[train_index], train_digit, biased_colours(train_digit, options["rho"], rng)
        )}
        for name, images, digits in (
            ("val", train_images[val_index], train_digits[val_index]),
            ("probe", test_images[probe_index], test_digits[probe_index]),
            ("test", test_images[test_index], test_digits[test_index]),
        ):
            splits[name] = coloured_split(images, digits, balanced_colours(digits, rng))
        spec = DatasetSpec(
            input_shape=(3, SIDE, SIDE),
            num_classes=NUM_DIGITS,
            num_private=NUM_COLOURS,
            encoder="biased_mnist_cnn",
            epochs=80,
            batch_size=100,
            target_name="digit",
            private_name="colour",
        )
        return Data(spec=spec, **splits)
