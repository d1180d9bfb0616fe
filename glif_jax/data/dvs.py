"""CIFAR10-DVS through tonic, with the converted frames cached on disk (the paper's data setup).

Recordings are read where `tonic.datasets.CIFAR10DVS(save_to=data_dir)` extracts them:
`<data_dir>/CIFAR10DVS/<class name>/*.aedat4` (class names and labels from tonic:
airplane = 0 ... truck = 9), with tonic's AEDAT4 reader. Within a class, recordings are
ordered by file name (lexicographic, as the authors' torchvision/spikingjelly folder
loader); the first ceil(90 %) of every class form "train", the rest "eval".

The first use of a split converts every recording of it into frames
(glif_jax.data.dvs_frames: 16 equal-event-count frames, resized to 48 x 48, float32
event counts, not normalised) and writes them to `<cache_dir>/` as one .npy per split
(1.3 GB for train); later uses memory-map that file and never touch the events. Delete
the cache files to rebuild them. Train-time augmentation: random crop 48 with 4-pixel
zero padding, the same window for all 16 frames of a recording; no flip.
Batches: "image" float32 [B, 16, 48, 48, 2], "label" int32 [B], "mask" float32 [B];
eval order is class by class, recordings in file-name order.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from pathlib import Path

import numpy as np

from glif_jax.data.augment import random_crop
from glif_jax.data.batching import array_batches
from glif_jax.data.dvs_frames import FRAME_SIZE, FRAMES, events_to_frames
from glif_jax.data.errors import DatasetNotFoundError
from glif_jax.data.info import DatasetInfo
from glif_jax.data.options import BatchRequest, DatasetOptions

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "~/tonic_datasets"
FOLDER = "CIFAR10DVS"  # tonic.datasets.CIFAR10DVS's folder under save_to
TRAIN_FRACTION = 0.9
CROP_PADDING = 4
CACHE_VERSION = 1
FRAME_SHAPE = (FRAMES, FRAME_SIZE, FRAME_SIZE, 2)
NUM_CLASSES = 10


def class_names() -> list[str]:
    """tonic's CIFAR10-DVS class names, in label order."""
    from tonic.datasets import CIFAR10DVS

    return sorted(CIFAR10DVS.classes, key=CIFAR10DVS.classes.get)


def how_to_get(data_dir: Path) -> str:
    from tonic.datasets import CIFAR10DVS

    return (
        f"Put the recordings at {data_dir / FOLDER}/<class>/*.aedat4 for the classes "
        f"{', '.join(class_names())}. To get them, run "
        f"`python -c \"import tonic; tonic.datasets.CIFAR10DVS(save_to='{data_dir}')\"` "
        f"on a machine with internet access (it downloads {CIFAR10DVS.filename} from "
        f"{CIFAR10DVS.url} and extracts the per-class zips), then copy the folder "
        f"{data_dir / FOLDER} here. Set config.dataset.data_dir to its parent."
    )


def list_recordings(data_dir: Path) -> list[tuple[Path, int]]:
    """(path, label) of every recording, class by class, by file name within a class."""
    root = data_dir / FOLDER
    if not root.is_dir():
        raise DatasetNotFoundError("cifar10_dvs", f"{root} (missing)", how_to_get(data_dir))
    recordings = []
    for label, name in enumerate(class_names()):
        paths = sorted((root / name).glob("*.aedat4"), key=lambda path: path.name)
        if not paths:
            raise DatasetNotFoundError(
                "cifar10_dvs", f"{root / name} (no .aedat4 recordings)", how_to_get(data_dir)
            )
        recordings.extend((path, label) for path in paths)
    return recordings


def split_recordings(recordings: list[tuple[Path, int]], split: str) -> list[tuple[Path, int]]:
    """The first ceil(TRAIN_FRACTION * n) recordings of each class ("train") or the rest."""
    chosen = []
    for label in range(NUM_CLASSES):
        of_class = [item for item in recordings if item[1] == label]
        cut = math.ceil(len(of_class) * TRAIN_FRACTION)
        chosen.extend(of_class[:cut] if split == "train" else of_class[cut:])
    return chosen


def read_events(path: Path) -> np.ndarray:
    """Structured events (t, x, y, p) of one .aedat4 recording, read by tonic."""
    from tonic.io import read_aedat4

    events = read_aedat4(os.fspath(path))
    events.dtype.names = ("t", "x", "y", "p")  # as tonic's CIFAR10DVS.__getitem__
    return events


def cache_paths(cache_dir: Path, split: str) -> tuple[Path, Path]:
    stem = f"cifar10_dvs_v{CACHE_VERSION}_T{FRAMES}_{FRAME_SIZE}px_{split}"
    return cache_dir / f"{stem}_frames.npy", cache_dir / f"{stem}_labels.npy"


def convert(recordings: list[tuple[Path, int]], frames_path: Path, labels_path: Path) -> None:
    """Converts recordings into the two cache files (written atomically)."""
    frames_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = f".tmp-{uuid.uuid4().hex}"
    frames_tmp = frames_path.with_name(frames_path.name + temporary)
    labels_tmp = labels_path.with_name(labels_path.name + temporary)
    try:
        frames = np.lib.format.open_memmap(
            frames_tmp, mode="w+", dtype=np.float32, shape=(len(recordings), *FRAME_SHAPE)
        )
        for index, (path, _) in enumerate(recordings):
            frames[index] = events_to_frames(read_events(path))
            if (index + 1) % 1000 == 0:
                logger.info("CIFAR10-DVS: converted %d / %d recordings", index + 1, len(recordings))
        frames.flush()
        del frames
        with open(labels_tmp, "wb") as labels_file:
            np.save(labels_file, np.asarray([label for _, label in recordings], np.int32))
        os.replace(labels_tmp, labels_path)
        os.replace(frames_tmp, frames_path)
    finally:
        for leftover in (frames_tmp, labels_tmp):
            leftover.unlink(missing_ok=True)


def load_split(data_dir: Path, cache_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(frames float32 [N, 16, 48, 48, 2] memory-mapped, labels int32 [N]) of a split,
    converting the recordings into the cache first if needed."""
    frames_path, labels_path = cache_paths(cache_dir, split)
    if not (frames_path.is_file() and labels_path.is_file()):
        recordings = split_recordings(list_recordings(data_dir), split)
        logger.info(
            "CIFAR10-DVS: converting %d %s recordings into %s", len(recordings), split, frames_path
        )
        convert(recordings, frames_path, labels_path)
    frames = np.load(frames_path, mmap_mode="r")
    labels = np.load(labels_path)
    if frames.shape[1:] != FRAME_SHAPE or len(frames) != len(labels):
        raise ValueError(
            f"corrupt CIFAR10-DVS cache {frames_path} ({frames.shape}, {len(labels)} labels): "
            "delete it to rebuild it"
        )
    return frames, labels


def _train_preprocess(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return random_crop(np.asarray(frames, np.float32), rng, CROP_PADDING)


def _eval_preprocess(frames: np.ndarray) -> np.ndarray:
    return np.asarray(frames, np.float32)


def build(options: DatasetOptions, request: BatchRequest):
    """(iterable of batches, DatasetInfo) for "cifar10_dvs"."""
    data_dir = Path(os.path.expanduser(options.data_dir or DEFAULT_DATA_DIR))
    if options.cache_dir:
        cache_dir = Path(os.path.expanduser(options.cache_dir))
    else:
        cache_dir = data_dir / f"{FOLDER}_frames"
    frames, labels = load_split(data_dir, cache_dir, request.split)
    batches = array_batches(
        frames,
        labels,
        request,
        eval_preprocess=_eval_preprocess,
        train_preprocess=_train_preprocess if options.augment else None,
    )
    return batches, DatasetInfo("cifar10_dvs", NUM_CLASSES, len(labels), FRAME_SHAPE)
