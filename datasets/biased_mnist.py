"""Biased-MNIST (Bahng et al., 2020, ReBias; the synthetic data of IRENE): MNIST on a coloured background.

Source (option ``source``): ``mnist`` (default) or ``fashion_mnist``, the same
protocol on Zalando's Fashion-MNIST (Xiao et al. 2017; ten garment classes,
same sizes and format). Fashion-MNIST images are binarised like MNIST's, so a
garment is its white silhouette on the coloured background.

Files, in torchvision's layout: ``<data root>/biased_mnist/MNIST/raw/`` and
``<data root>/biased_mnist/FashionMNIST/raw/``, each holding
train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
t10k-labels-idx1-ubyte, gzipped (``.gz``) or plain (as torchvision extracts
them; read when the ``.gz`` is absent). Both sources are verified by content
(:class:`removal_bench.datasets.download.DataFile` ``content_sha256``): a file
is present when its decompressed bytes match the original idx file's SHA-256
(:data:`MNIST_SHA256`, :data:`FASHION_SHA256`), whoever compressed it:
upstream's archives, Debian's repackaged Fashion-MNIST and the MNIST gzipped
by ``gzip -n -9`` in ../shared/data all differ in their ``.gz`` bytes and hold
the same content. A truncated or altered file is "corrupt". Downloads come
from torchvision's MNIST mirror and checked against upstream's archive SHA-256
(:data:`SHA256`, as many independent projects publish them; torchvision itself
declares only MD5) and the content's; Fashion-MNIST from Zalando's own address,
checked by content only (Zalando publishes MD5s of its archives, no SHA-256).
A run checks and downloads only the source its options name
(:meth:`BiasedMnist.files_for`); ``bench data check`` and ``bench data fetch``
cover both. The idx format is read with numpy: a big-endian header (two zero
bytes, type 0x08 = unsigned byte, the number of dimensions, each dimension as a
32-bit integer), then the bytes.

Colouring, as in ReBias's ``ColourBiasedMNIST`` (the code IRENE uses): the
strokes are binarised (every non-zero pixel becomes white) and the background
(every zero pixel) takes one of ten colours, ReBias's palette. The palette and
the colouring are those of :mod:`removal_bench.datasets.colored_digits`. ``x`` is float32,
shape (n, 3, 28, 28), in [-1, 1] ((image - 0.5) / 0.5). Target ``y`` = the
digit; private attribute ``s`` = the colour index (10 classes each).

Bias: in ``train`` an image takes its digit's colour (colour index = digit)
with probability ``rho`` (option; 0.99 by default, or 0.995, 0.997, 0.999, the
values of the paper), else one of the nine other colours. ``rho`` 0.9
and 0.95 are not the paper's: they are for reduced runs, where a subsample keeps
too few bias-conflicting images to learn the shape from (Biased Fashion-MNIST at
10% of the images, ``small_cnn``, 10 epochs, measured on 2 CPU cores: vanilla's
unbiased accuracy is 16% at rho 0.99 and 39% at rho 0.9). How the colours are
dealt depends on ``split``:

- ``split=reference`` deals them as ReBias does (:func:`rebias_colours`; clovaai/rebias@f9e5639
  datasets/colour_mnist.py, ``BiasedMNIST._update_bias_indices``, l. 79-97): per digit exactly
  int(n x rho) images take the digit's colour, and the other images are cut in blocks of
  ceil((n - int(n x rho)) / 9), dealt to the nine other colours in a shuffled order; so at rho 0.999
  every run has the same number of bias-conflicting images (63 of MNIST's 60,000; 606 at rho 0.99), as the paper's.
- ``split=ours`` keeps an independent draw per image (:func:`biased_colours`, the same expected
  proportions; at rho 0.995, 250 +- 16 bias-conflicting images of 50,000): the committed leaderboard's
  Biased-MNIST trials were drawn so, and changing the draw would change every one of them.

In ``val``,
``probe`` and ``test`` the colour is independent of the digit: within each
digit the colours are dealt round-robin to the shuffled images, so every
(digit, colour) count is the same up to one image.

Splits (seeded by ``data_seed``), option ``split``:
- ``ours`` (default): the 60,000 training images are shuffled into ``train``
  (50,000, biased) and ``val`` (10,000, recoloured unbiased); the 10,000 test
  images into ``probe`` (5,000) and ``test`` (5,000). Disjoint images
  everywhere; files of other sizes are cut at the same fractions (5/6, 1/2).
- ``reference``: as ReBias, EnD and IRENE train and test: ``train`` is all
  60,000 training images (biased; at rho 0.999 about 60 bias-conflicting
  images, not 50) and ``test`` all 10,000 test images (unbiased). Our protocol
  still needs ``val`` and ``probe`` (the attackers are fitted on ``probe`` and
  chosen on ``val``); they are the two halves of the same 10,000 test images,
  each recoloured by its own unbiased draw. So the attackers never see a
  training image, but ``val`` shares its digits with ``test``: selecting a model
  on ``val`` is then optimistic, which the references' fixed-epoch protocol (no
  selection) does not need.
``subsample`` (a fraction, 1 by default) keeps that share of the training and of
the test images (drawn with ``data_seed``) before splitting: for quick runs on a
CPU, and stated wherever its numbers appear.

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

from removal_bench.core.errors import UserError
from removal_bench.core.params import Param
from removal_bench.core.recipes import CPU_BIASED_MNIST, CPU_CONVERGED_BIASED_MNIST, IRENE_BIASED_MNIST
from removal_bench.datasets.base import Data, DataFile, Dataset, DatasetSpec, Split, register
from removal_bench.datasets.colored_digits import MAX_GREY, NUM_COLOURS, NUM_DIGITS, biased_colours, colourise

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
RAW = "MNIST/raw/"
FASHION_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # Zalando's, as torchvision uses
FASHION_RAW = "FashionMNIST/raw/"
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
# SHA-256 of the decompressed idx files (../shared/data/README.md; there with the MD5s that many projects
# publish for the uncompressed MNIST files, 6bbc9ace..., a25bea73..., 2646ac64..., 27ae3e4e...).
MNIST_SHA256 = {
    TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# SHA-256 of the decompressed idx files (../shared/data/README.md; upstream's and Debian's .gz agree on these).
FASHION_SHA256 = {
    TRAIN_IMAGES: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    TRAIN_LABELS: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    TEST_IMAGES: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    TEST_LABELS: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
STEMS = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
SOURCES = {"mnist": RAW, "fashion_mnist": FASHION_RAW}
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


def raw_path(folder: Path, stem: str, raw: str = RAW) -> Path:
    """The .gz file when present (it is the verified one), else the plain one."""
    gz = folder / raw / f"{stem}.gz"
    return gz if gz.is_file() or not (folder / raw / stem).is_file() else folder / raw / stem


def read_part(folder: Path, images_stem: str, labels_stem: str, raw: str = RAW) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(raw_path(folder, images_stem, raw), 3)
    labels_path = raw_path(folder, labels_stem, raw)
    labels = read_idx(labels_path, 1)
    if images.shape[1:] != (SIDE, SIDE):
        raise UserError(f"biased_mnist: {raw_path(folder, images_stem, raw)} holds {images.shape[1:]} images, expected 28x28")
    if len(images) != len(labels):
        raise UserError(
            f"biased_mnist: {len(images)} images in {images_stem} but {len(labels)} labels in {labels_stem}"
        )
    if len(labels) and labels.max() >= NUM_DIGITS:
        raise UserError(f"biased_mnist: {labels_path} holds label {labels.max()}, expected 0..9")
    return images, labels.astype(np.int64)


def source_files(source: str) -> tuple[DataFile, ...]:
    """One source's four files, checked by their decompressed content (and, for MNIST's downloads, upstream's archive)."""
    if source == "fashion_mnist":
        return tuple(DataFile(f"{FASHION_RAW}{stem}.gz", None, f"{FASHION_MIRROR}{stem}.gz", FASHION_SHA256[stem])
                     for stem in STEMS)
    return tuple(DataFile(f"{RAW}{stem}.gz", SHA256[stem], f"{MIRROR}{stem}.gz", MNIST_SHA256[stem]) for stem in STEMS)


def rebias_colours(digits: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
    """Biased colours with ReBias's exact counts (clovaai/rebias@f9e5639 datasets/colour_mnist.py l. 79-97).

    For each digit (in order 0..9): its images shuffled; the first int(n * rho) take the digit's colour;
    the rest are split into consecutive blocks of ceil((n - int(n * rho)) / 9) images, the k-th block
    taking the k-th colour of the other nine colours (digit+1, ..., digit+9 mod 10) in a shuffled order.
    As there, the last block may be shorter and, when fewer images conflict than there are colours, some
    colours get none. Our random generator, not numpy's global one: the counts are ReBias's, the draws not.
    """
    colours = np.empty(len(digits), dtype=np.int64)
    for digit in range(NUM_DIGITS):
        members = rng.permutation(np.flatnonzero(digits == digit))
        aligned = int(len(members) * rho)
        colours[members[:aligned]] = digit
        rest = members[aligned:]
        if rest.size == 0:
            continue
        block = int(np.ceil(rest.size / (NUM_COLOURS - 1)))
        others = rng.permutation([(digit + k) % NUM_COLOURS for k in range(1, NUM_COLOURS)])
        for index, start in enumerate(range(0, rest.size, block)):
            colours[rest[start:start + block]] = others[index]
    return colours


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
    description = "MNIST (or Fashion-MNIST) on a background coloured by class with probability rho in train (Biased-MNIST)"
    recipe = IRENE_BIASED_MNIST  # the training recipe (removal_bench.core.recipes), with its citation
    # docs/BIASED_MNIST.md: --recipe cpu, the 3-epoch quick look (the leaderboard's first Biased-MNIST section ran
    # under it); --recipe cpu-converged, models that have finished learning, about 6 minutes a trial on one thread
    named_recipes = {"cpu": CPU_BIASED_MNIST, "cpu-converged": CPU_CONVERGED_BIASED_MNIST}
    options = {
        "rho": Param(
            0.99, "P(colour = digit's colour) in train", choices=(0.9, 0.95, 0.99, 0.995, 0.997, 0.999)
        ),
        "source": Param("mnist", "mnist; fashion_mnist: Zalando's Fashion-MNIST, same protocol",
                        choices=tuple(SOURCES)),
        "split": Param("ours", "ours: train 50k / val 10k / probe 5k / test 5k; reference: train on all 60k, "
                       "test on all 10k, val and probe the test images recoloured", choices=("ours", "reference")),
        "subsample": Param(1.0, "fraction of the training and test images kept (quick runs)", low=0.001, high=1.0),
        "data_seed": Param(0, "seed of the splits and of every colour draw"),
    }
    files = source_files("mnist") + source_files("fashion_mnist")

    @classmethod
    def files_for(cls, options: dict[str, Any] | None) -> tuple[DataFile, ...]:
        """The files of the source ``options`` name (all of them without options: ``bench data``)."""
        if options is None:
            return cls.files
        prefix = SOURCES[options.get("source", cls.options["source"].default)]
        return tuple(f for f in cls.files if f.name.startswith(prefix))

    @classmethod
    def prepare_source(cls, data_root: Path, source: str, download: bool = True) -> None:
        """One source's files present and intact, downloading what is missing if allowed."""
        cls.prepare(data_root, download=download, options={"source": source})

    def load(self, options: dict[str, Any], data_root: Path) -> Data:
        folder = self.folder(data_root)
        source = options["source"]
        raw = SOURCES[source]
        absent = [stem for stem in STEMS if not raw_path(folder, stem, raw).is_file()]
        if absent:  # prepare(options) checks this source before a run; a direct load() may come without it
            fetch = "bench data fetch biased_mnist"
            raise UserError(
                f"biased_mnist: source={source} needs {', '.join(absent)} (.gz or extracted) in {folder / raw}; "
                f"`{fetch}` downloads them, or pass --data-root pointing at a folder that holds biased_mnist/{raw}"
            )
        train_images, train_digits = read_part(folder, TRAIN_IMAGES, TRAIN_LABELS, raw)
        test_images, test_digits = read_part(folder, TEST_IMAGES, TEST_LABELS, raw)
        rng = np.random.default_rng(options["data_seed"])
        if options["subsample"] < 1.0:
            keep = np.sort(rng.permutation(len(train_digits))[: max(2, round(options["subsample"] * len(train_digits)))])
            train_images, train_digits = train_images[keep], train_digits[keep]
            keep = np.sort(rng.permutation(len(test_digits))[: max(4, round(options["subsample"] * len(test_digits)))])
            test_images, test_digits = test_images[keep], test_digits[keep]
        if options["split"] == "reference":
            train_index, test_index = np.arange(len(train_digits)), np.arange(len(test_digits))
            order = rng.permutation(len(test_digits))
            cut = int(round(0.5 * len(order)))
            val_index, probe_index = np.sort(order[:cut]), np.sort(order[cut:])
            val_images, val_digits = test_images[val_index], test_digits[val_index]
        else:
            order = rng.permutation(len(train_digits))
            cut = int(round(TRAIN_FRACTION * len(order)))
            train_index, val_index = np.sort(order[:cut]), np.sort(order[cut:])
            order = rng.permutation(len(test_digits))
            cut = int(round(PROBE_FRACTION * len(order)))
            probe_index, test_index = np.sort(order[:cut]), np.sort(order[cut:])
            val_images, val_digits = train_images[val_index], train_digits[val_index]
        if min(len(train_index), len(val_index), len(probe_index), len(test_index)) == 0:
            raise UserError(
                f"biased_mnist: {len(train_digits)} training and {len(test_digits)} test images are too few to split"
            )

        train_digit = train_digits[train_index]
        deal = rebias_colours if options["split"] == "reference" else biased_colours
        splits = {"train": coloured_split(train_images[train_index], train_digit, deal(train_digit, options["rho"], rng))}
        for name, images, digits in (
            ("val", val_images, val_digits),
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
            target_name="digit" if source == "mnist" else "garment",
            private_name="colour",
        )
        return Data(spec=spec, **splits)
