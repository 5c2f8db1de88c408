"""CelebA (Liu et al., 2015): predict one face attribute, remove another (IRENE's real-image task).

Data, in torchvision's folder layout under ``<data root>/celeba/``:
``img_align_celeba/`` (the 202,599 aligned 178x218 JPEGs), ``list_attr_celeba.txt``
(a count line, a line of the 40 attribute names, then one line per image of
-1/1 values) and ``list_eval_partition.txt`` (one line per image: 0 = train,
1 = valid, 2 = test). CelebA is distributed through its authors' Google Drive,
which cannot be downloaded automatically: ``prepare`` names the folder to put
the files in. No SHA-256 is declared (none is published).

Labels: target ``y`` = the attribute ``target`` (default Blond_Hair), private
``s`` = the attribute ``private`` (default Male); 1 where the attribute is
present. Both must be among the 40 attribute names and differ.

Images: each JPEG is decoded once (PIL) and brought to ``resolution`` x
``resolution`` (default 224, as IRENE) with PIL's bilinear filter (antialiased
when shrinking, as torchvision's ``Resize`` on PIL images), in one of two ways,
the option ``resize``:

- ``squash`` (default, IRENE's): the whole aligned 178 x 218 image is resized to
  a square, so faces are squeezed vertically by 178/218; nothing is cut.
- ``crop``: first a centre square of side min(width, height) (178 x 178, cutting
  20 rows at top and bottom), then the resize; faces keep their proportions.

The cheaper setting is ``resize=crop resolution=128`` (this dataset's default
before 1408fd8; a third of the memory and compute of 224 px). The result goes
into a uint8 cache, ``images-<resize>-<resolution>.npy`` (shape (n, 3, R, R),
train images first, then valid, then test, each in the partition file's order)
beside a JSON manifest ``images-<resize>-<resolution>.json`` (format, resize,
resolution, number of images, SHA-256 of the ordered image names). The cache is
written under a temporary name and renamed when complete; it is reused while
its manifest matches, and rebuilt when it does not (each resize and resolution
has its own cache; caches of format 1, ``images-<resolution>.*``, always
centre-cropped, are never read). It lives in the dataset's folder, or in
``cache_dir`` when set (needed when the data root is read-only). Size: 202,599 x
3 x R x R bytes: about 10 GB at 128, 30 GB at 224.

``x`` is uint8, not float: ``train`` and ``val`` are zero-copy views of the
memory-mapped cache (``torch.from_numpy``; mapped copy-on-write, so writing to
them never touches the file); ``probe`` and ``test`` are gathered into memory
(the official test partition is about 1 GB at 128, 3 GB at 224). The trial
turns batches into floats on the device: the spec's ``pixel_mean`` and ``pixel_std``
(ImageNet's, what torchvision's pretrained ResNet-18 expects) make it wrap the encoder
in ``removal_bench.core.encoders.NormalisedInput``.

``weights``: a local file of ResNet-18 weights (a torchvision state dict, such as
``resnet18-f37072fd.pth``), default "" (train from scratch). The dataset only
checks that the file exists; the trial loads it into the encoder (the spec's
``encoder_weights``) with ``removal_bench.core.encoders.load_weights``.

Splits: the official train partition is ``train`` (162,770 images); the
official test partition (19,962) is shuffled (seeded by ``data_seed``) and cut
in halves, ``probe`` and ``test``. ``val`` (model selection, and the plateau
schedule's monitor) comes from the official valid partition (19,867), in one of
two ways, the option ``val``:

- ``balanced`` (default, IRENE's): the group-balanced subset of IRENE's
  ``CelebA(split='valid', unbiased=True)`` (enzotarta/irene@c7b74ed
  datasets/celebA.py, used by train.py@aec198c for the plateau's validation
  loss): with m the size of the smallest (target, private) group of the valid
  partition, each of the four groups keeps m images, those of pandas'
  ``group.sample(m, random_state=42)`` (a fresh ``RandomState(42)`` per group,
  rows in file order), so the subset is the very one IRENE selects (for
  Blond_Hair/Male, 4 x the number of blond men in valid). A pair of attributes
  with an empty group in valid is refused (use ``val=plain``).
- ``plain``: the whole valid partition, in file order (zero-copy view).

Differences from IRENE on purpose: the private label is the attribute itself
(IRENE flips Male to 1 - Male; the groups, hence the subset, are the same); the
subset keeps file order (IRENE's is grouped; order does not change an
evaluation); the random horizontal flip is the recipe's augmentation
(``removal_bench.core.recipes.IRENE_CELEBA``), applied by the trial, not here; IRENE has no
probe split and its train.py evaluates no test set for CelebA, so ``probe`` and
``test`` are this benchmark's halves of the official test partition. The spec's
encoder is ``resnet18`` (epochs 20, batch size 256 when no recipe applies; the
dataset's recipe, ``IRENE_CELEBA``, trains 100 epochs at batch 100).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from removal_bench.core.disk import FULL_ERRNOS, full_disk_error, is_disk_full, size_text
from removal_bench.core.errors import UserError
from removal_bench.core.params import Param
from removal_bench.core.recipes import IRENE_CELEBA
from removal_bench.datasets.base import Data, DataFile, Dataset, DatasetSpec, Split, register
from removal_bench.datasets.download import MISSING, PRESENT, file_status

log = logging.getLogger(__name__)

ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)  # fmt: skip
ATTRIBUTE_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGES = "img_align_celeba"
HOME = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
PARTITIONS = (0, 1, 2)  # train, valid, test
CACHE_FORMAT = 2  # 2: resize in the manifest and the file name (format 1 always centre-cropped)
RESIZES = ("squash", "crop")
VALIDATIONS = ("balanced", "plain")
IRENE_VALID_SEED = 42  # IRENE's CelebA(seed=42): random_state of the balanced valid subset
PIXEL_MEAN = (0.485, 0.456, 0.406)  # ImageNet's, as torchvision's pretrained ResNet-18 expects
PIXEL_STD = (0.229, 0.224, 0.225)
FILE_MODE = 0o644
BUILD_CHUNK = 256


def source_hint(folder: Path) -> str:
    return (
        f"CelebA comes from its authors' Google Drive (linked from {HOME}), which cannot be downloaded "
        f"automatically: put {IMAGES}/ (unzipped img_align_celeba.zip), {ATTRIBUTE_FILE} and "
        f"{PARTITION_FILE} in {folder}"
    )


def read_attributes(path: Path) -> pd.DataFrame:
    """``list_attr_celeba.txt`` as a frame indexed by image name, one int8 column (0/1) per attribute."""
    try:
        with open(path) as handle:
            count_line = handle.readline()
            names = tuple(handle.readline().split())
            frame = pd.read_csv(handle, sep=r"\s+", header=None, na_filter=False, engine="c")
    except OSError as error:
        raise UserError(f"celeba: cannot read {path}: {error.strerror or error}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"celeba: cannot parse {path}: {' '.join(str(error).split())}") from None
    if names != ATTRIBUTES:
        raise UserError(f"celeba: cannot parse {path}: its second line is not the 40 CelebA attribute names")
    if frame.shape[1] != 1 + len(ATTRIBUTES):
        raise UserError(f"celeba: cannot parse {path}: rows hold {frame.shape[1]} values, expected 41")
    if count_line.strip() != str(len(frame)):
        raise UserError(f"celeba: cannot parse {path}: its first line says {count_line.strip()!r} images, it lists {len(frame)}")
    values = frame.iloc[:, 1:].to_numpy()  # integers when every value parsed as one (the fast path)
    if values.dtype.kind != "i":
        values = frame.iloc[:, 1:].apply(pd.to_numeric, errors="coerce").to_numpy()
    bad = ~np.isin(values, (1, -1))
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise UserError(f"celeba: cannot parse {path}: image {frame.iloc[row, 0]} has a value other than 1 or -1")
    out = pd.DataFrame((values == 1).astype(np.int8), columns=list(ATTRIBUTES))
    out.index = pd.Index(frame.iloc[:, 0].astype(str).to_numpy(), name="image")
    if out.index.has_duplicates:
        raise UserError(f"celeba: cannot parse {path}: image {out.index[out.index.duplicated()][0]} is listed twice")
    return out


def read_partition(path: Path) -> pd.DataFrame:
    """``list_eval_partition.txt`` as a frame with columns image, partition (0, 1 or 2)."""
    try:
        frame = pd.read_csv(
            path, sep=r"\s+", header=None, names=["image", "partition"], dtype=str, na_filter=False, engine="c"
        )
    except OSError as error:
        raise UserError(f"celeba: cannot read {path}: {error.strerror or error}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"celeba: cannot parse {path}: {' '.join(str(error).split())}") from None
    bad = ~frame["partition"].isin(["0", "1", "2"])
    if bad.any():
        raise UserError(f"celeba: cannot parse {path}: partition {frame['partition'][bad].iloc[0]!r} is not 0, 1 or 2")
    if frame["image"].duplicated().any():
        raise UserError(f"celeba: cannot parse {path}: image {frame['image'][frame['image'].duplicated()].iloc[0]} is listed twice")
    frame["partition"] = frame["partition"].astype(np.int64)
    return frame


def _decode(path: Path, resolution: int, resize: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if resize == "crop":
                width, height = image.size
                side = min(width, height)
                left, top = (width - side) // 2, (height - side) // 2
                image = image.crop((left, top, left + side, top + side))
            image = image.resize((resolution, resolution), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
    except FileNotFoundError:
        raise UserError(f"celeba: {path.name} is listed in {PARTITION_FILE} but missing from {path.parent}") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise UserError(f"celeba: cannot decode {path}: {' '.join(str(error).split())}") from None


def manifest_for(names: list[str], resolution: int, resize: str) -> dict[str, Any]:
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
    return {"format": CACHE_FORMAT, "resolution": resolution, "resize": resize, "filter": "bilinear",
            "images": len(names), "sources": digest}  # fmt: skip


def cache_paths(cache_folder: Path, manifest: dict[str, Any]) -> tuple[Path, Path]:
    stem = f"images-{manifest['resize']}-{manifest['resolution']}"
    return cache_folder / f"{stem}.npy", cache_folder / f"{stem}.json"


def open_cache(cache_folder: Path, manifest: dict[str, Any]) -> np.ndarray | None:
    """The cached images, memory-mapped copy-on-write, or None when absent or not matching ``manifest``."""
    array_path, manifest_path = cache_paths(cache_folder, manifest)
    try:
        if json.loads(manifest_path.read_text()) != manifest:
            return None
        images = np.load(array_path, mmap_mode="c")
    except (OSError, ValueError):
        return None
    side = manifest["resolution"]
    if images.dtype != np.uint8 or images.shape != (manifest["images"], 3, side, side):
        return None
    return images


def build_cache(image_folder: Path, names: list[str], cache_folder: Path, manifest: dict[str, Any]) -> None:
    """Decode every image into ``images-<resize>-<R>.npy`` (via a temporary file), then write the manifest."""
    resolution, resize = manifest["resolution"], manifest["resize"]
    array_path, manifest_path = cache_paths(cache_folder, manifest)
    try:
        cache_folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=cache_folder, prefix=f".{array_path.name}.partial-")
        os.close(handle)
    except OSError as error:
        raise UserError(
            f"celeba: cannot write the image cache in {cache_folder} ({error.strerror or error}); "
            f"set the option cache_dir to a writable folder"
        ) from None
    log.info("celeba: decoding %d images (%s) at %dx%d into %s", len(names), resize, resolution, resolution,
             array_path)  # fmt: skip
    try:
        images = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=(len(names), 3, resolution, resolution))
        reserve(temporary)  # before the first page is written: see reserve

        def fill(start: int) -> None:
            for row in range(start, min(start + BUILD_CHUNK, len(names))):
                images[row] = _decode(image_folder / names[row], resolution, resize)

        # PIL releases the GIL while decoding and resizing: threads use every core.
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
            futures = [pool.submit(fill, start) for start in range(0, len(names), BUILD_CHUNK)]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:  # a missing or broken image: stop at once, not after every image
                    future.cancel()
                raise
        images.flush()
        del images
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, array_path)
        handle, temporary = tempfile.mkstemp(dir=cache_folder, prefix=f".{manifest_path.name}.partial-")
        with os.fdopen(handle, "w") as out:
            json.dump(manifest, out, indent=1, sort_keys=True)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, manifest_path)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if is_disk_full(error):
            size = len(names) * 3 * resolution * resolution
            raise full_disk_error(error, array_path, f"the CelebA image cache, {size_text(size)}; free space or set the "
                                  "option cache_dir to a folder with room, then run the same command again") from None
        raise


def reserve(path: str | Path) -> None:
    """Allocate the whole (sparse) file on its disk now. The cache is written through a memory map, and a
    page that the disk has no room for is not an error there but a SIGBUS that kills the process (seen on
    a full tmpfs); ``posix_fallocate`` turns it into ``ENOSPC`` before anything is written. A file system
    that cannot allocate ahead (``EOPNOTSUPP``, ``EINVAL``) is left as it was."""
    if not hasattr(os, "posix_fallocate"):
        return
    handle = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(handle, 0, os.fstat(handle).st_size)
    except OSError as error:
        if error.errno in FULL_ERRNOS:
            raise
    finally:
        os.close(handle)


def cached_images(
    image_folder: Path, names: list[str], cache_folder: Path, resolution: int, resize: str
) -> np.ndarray:
    """The images of ``names`` at ``resolution`` (``resize``), from the cache; built first when absent or stale."""
    manifest = manifest_for(names, resolution, resize)
    images = open_cache(cache_folder, manifest)
    if images is None:
        if not image_folder.is_dir():
            raise UserError(f"celeba: no image folder {image_folder} to build the cache from; {source_hint(image_folder.parent)}")
        build_cache(image_folder, names, cache_folder, manifest)
        images = open_cache(cache_folder, manifest)
        if images is None:  # another process replaced it meanwhile with something else
            raise UserError(f"celeba: the image cache in {cache_folder} changed while it was built; run again")
    return images


def balanced_rows(y: np.ndarray, s: np.ndarray, seed: int = IRENE_VALID_SEED) -> np.ndarray:
    """Sorted rows of IRENE's group-balanced subset: m per (y, s) group, m the smallest group's size.

    Per group, the rows pandas' ``group.sample(m, random_state=seed)`` keeps: ``RandomState(seed)
    .permutation(len(group))[:m]`` over the group's rows in order (enzotarta/irene@c7b74ed datasets/celebA.py).
    """
    groups = [np.flatnonzero((y == target) & (s == private)) for target in (0, 1) for private in (0, 1)]
    size = min(len(group) for group in groups)
    chosen = [group[np.random.RandomState(seed).permutation(len(group))[:size]] for group in groups]
    return np.sort(np.concatenate(chosen))


@register
class CelebA(Dataset):
    name = "celeba"
    description = "CelebA faces: one attribute as target, another as private (uint8 images, cached)"
    recipe = IRENE_CELEBA  # the training recipe (removal_bench.core.recipes), with its citation
    options = {
        "target": Param("Blond_Hair", "target attribute, one of the 40 CelebA attributes", choices=ATTRIBUTES),
        "private": Param("Male", "private attribute, one of the 40 CelebA attributes", choices=ATTRIBUTES),
        "resolution": Param(224, "image side in pixels (IRENE: 224; 128 is the cheaper setting)", low=8, high=512),
        "resize": Param("squash", "squash: the whole image to a square (IRENE); crop: centre square first",
                        choices=RESIZES),
        "val": Param("balanced", "validation: IRENE's group-balanced subset of valid, or plain (all of valid)",
                     choices=VALIDATIONS),
        "weights": Param("", "local ResNet-18 weights file for the encoder (default: train from scratch)"),
        "cache_dir": Param("", "folder of the decoded image cache (default: the dataset's folder)"),
        "data_seed": Param(0, "seed of the probe/test halves of the official test partition"),
    }
    files = (DataFile(ATTRIBUTE_FILE), DataFile(PARTITION_FILE))

    @classmethod
    def prepare(cls, data_root: Path, download: bool = True, options: dict[str, Any] | None = None) -> None:
        """The two lists must be there, and the image folder or a built cache; the error says where they come from."""
        folder = cls.folder(data_root)
        try:
            super().prepare(data_root, download=download, options=options)
        except UserError as error:
            raise UserError(f"{error}. {source_hint(folder)}") from None
        if not (folder / IMAGES).is_dir() and not any(folder.glob("images-*.json")):
            raise UserError(f"celeba: no folder {IMAGES}/ in {folder}. {source_hint(folder)}")

    @classmethod
    def file_statuses(cls, data_root: Path) -> list[tuple[DataFile, str]]:
        folder = cls.folder(data_root)
        images = (DataFile(IMAGES + "/"), PRESENT if (folder / IMAGES).is_dir() else MISSING)
        return [*file_status(folder, cls.files), images]

    def load(self, options: dict[str, Any], data_root: Path) -> Data:
        target, private = options["target"], options["private"]
        if target == private:
            raise UserError(f"celeba: target and private are both {target!r}; choose two different attributes")
        if options["weights"] and not Path(options["weights"]).expanduser().is_file():
            raise UserError(f"celeba: weights file {options['weights']} does not exist")
        folder = self.folder(data_root)
        attributes = read_attributes(folder / ATTRIBUTE_FILE)
        partition = read_partition(folder / PARTITION_FILE)
        unknown = ~partition["image"].isin(attributes.index)
        if unknown.any():
            raise UserError(
                f"celeba: image {partition['image'][unknown].iloc[0]} of {PARTITION_FILE} has no row in {ATTRIBUTE_FILE}"
            )
        ordered = pd.concat([partition[partition["partition"] == p] for p in PARTITIONS], ignore_index=True)
        counts = [int((ordered["partition"] == p).sum()) for p in PARTITIONS]
        if counts[0] == 0 or counts[1] == 0 or counts[2] < 2:
            raise UserError(f"celeba: {PARTITION_FILE} holds {counts} train/valid/test images; every split needs some")
        names = ordered["image"].tolist()
        cache_folder = Path(options["cache_dir"]).expanduser() if options["cache_dir"] else folder
        images = cached_images(folder / IMAGES, names, cache_folder, options["resolution"], options["resize"])
        labels = attributes.loc[names]
        y = labels[target].to_numpy(np.int64)
        s = labels[private].to_numpy(np.int64)

        def part(rows: slice | np.ndarray, view: bool) -> Split:
            x = images[rows] if view else np.ascontiguousarray(images[rows])
            return Split(torch.from_numpy(x), torch.from_numpy(y[rows].copy()), torch.from_numpy(s[rows].copy()))

        n_train, n_val, n_test = counts
        start = n_train + n_val
        val_rows: slice | np.ndarray = slice(n_train, start)
        if options["val"] == "balanced":
            val_rows = n_train + balanced_rows(y[val_rows], s[val_rows])
            if len(val_rows) == 0:
                raise UserError(
                    f"celeba: the valid partition has a (target, private) group with no image for "
                    f"{target}/{private}, so its balanced subset is empty; use val=plain"
                )
        order = np.random.default_rng(options["data_seed"]).permutation(n_test)
        cut = int(round(n_test / 2))
        splits = {
            "train": part(slice(0, n_train), view=True),
            "val": part(val_rows, view=isinstance(val_rows, slice)),
            "probe": part(start + np.sort(order[:cut]), view=False),
            "test": part(start + np.sort(order[cut:]), view=False),
        }
        side = options["resolution"]
        spec = DatasetSpec(
            input_shape=(3, side, side),
            num_classes=2,
            num_private=2,
            encoder="resnet18",
            epochs=20,
            batch_size=256,
            target_name=target,
            private_name=private,
            pixel_mean=PIXEL_MEAN,
            pixel_std=PIXEL_STD,
            encoder_weights=options["weights"] or None,
        )
        return Data(spec=spec, **splits)
