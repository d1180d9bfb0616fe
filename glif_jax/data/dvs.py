"""CIFAR10-DVS through tonic, with the converted frames cached on disk (the paper's data setup).

Recordings are read where `tonic.datasets.CIFAR10DVS(save_to=data_dir)` extracts them:
`<data_dir>/CIFAR10DVS/<class name>/*.aedat4` (class names and labels from tonic:
airplane = 0 ... truck = 9), with tonic's AEDAT4 reader. Within a class, recordings are
ordered by file name (lexicographic, as the authors' torchvision/spikingjelly folder
loader); the first ceil(90 %) of every class form "train", the rest "eval".

The first use of a split converts every recording of it into frames
(glif_jax.data.dvs_frames: 16 equal-event-count frames, resized to 48 x 48, float32
event counts, not normalised) and writes them to `<cache_dir>/` as one .npy per split
(1.3 GB for train), with the labels and a manifest .json; later uses memory-map the
frames and never read the events. The cache is keyed on
  - the conversion: CACHE_VERSION and the framing (frame count, frame size, sensor size),
    hashed into the file names, so caches of other settings are never read (and are left
    on disk: delete them to free the space);
  - the recordings of the split: their names relative to `CIFAR10DVS/`, labels, sizes
    and modification times, hashed into the manifest and compared on every use.
A changed, added or removed recording, or a cache without its manifest (e.g. an
interrupted conversion), makes the split convert again, replacing its cache files.
Only if the whole `CIFAR10DVS/` folder is absent is an existing cache of the same
conversion used unverified (with a warning), so the frames alone can be copied elsewhere.
Train-time augmentation: random crop 48 with 4-pixel zero padding, the same window for
all 16 frames of a recording; no flip.
Batches: "image" float32 [B, 16, 48, 48, 2], "label" int32 [B], "mask" float32 [B];
eval order is class by class, recordings in file-name order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import uuid
from pathlib import Path

import numpy as np

from glif_jax.data.augment import random_crop
from glif_jax.data.batching import array_batches
from glif_jax.data.dvs_frames import PAPER_FRAMING, Framing, events_to_frames
from glif_jax.data.errors import DatasetNotFoundError
from glif_jax.data.info import DatasetInfo
from glif_jax.data.options import BatchRequest, DatasetOptions
from glif_jax.extras import require

TONIC_FEATURE = "The CIFAR10-DVS pipeline (tonic)"

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "~/tonic_datasets"
FOLDER = "CIFAR10DVS"  # tonic.datasets.CIFAR10DVS's folder under save_to
TRAIN_FRACTION = 0.9
CROP_PADDING = 4
CACHE_VERSION = 2  # bump when the conversion itself changes
FRAME_SHAPE = PAPER_FRAMING.frame_shape
NUM_CLASSES = 10


def class_names() -> list[str]:
    """tonic's CIFAR10-DVS class names, in label order."""
    CIFAR10DVS = require("tonic.datasets", "dvs", TONIC_FEATURE).CIFAR10DVS

    return sorted(CIFAR10DVS.classes, key=CIFAR10DVS.classes.get)


def how_to_get(data_dir: Path) -> str:
    CIFAR10DVS = require("tonic.datasets", "dvs", TONIC_FEATURE).CIFAR10DVS

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
    read_aedat4 = require("tonic.io", "dvs", TONIC_FEATURE).read_aedat4

    events = read_aedat4(os.fspath(path))
    events.dtype.names = ("t", "x", "y", "p")  # as tonic's CIFAR10DVS.__getitem__
    return events


@dataclasses.dataclass(frozen=True)
class CachePaths:
    """The files of one split's frame cache."""

    frames: Path
    labels: Path
    manifest: Path


def framing_key(framing: Framing) -> dict:
    """What the conversion depends on besides the recordings (JSON-ready)."""
    return {"version": CACHE_VERSION, **dataclasses.asdict(framing)}


def cache_paths(cache_dir: Path, split: str, framing: Framing = PAPER_FRAMING) -> CachePaths:
    """Cache files of ``split`` under ``framing``: a short hash of framing_key in the names."""
    key = json.dumps(framing_key(framing), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    stem = f"cifar10_dvs_v{CACHE_VERSION}_T{framing.frames}_{framing.frame_size}px_{digest}_{split}"
    return CachePaths(
        cache_dir / f"{stem}_frames.npy",
        cache_dir / f"{stem}_labels.npy",
        cache_dir / f"{stem}_manifest.json",
    )


def recordings_fingerprint(data_dir: Path, recordings: list[tuple[Path, int]]) -> str:
    """sha256 of the recordings' names relative to the dataset folder, labels, sizes and
    modification times (in order): changes when any recording is changed, added or removed."""
    root = data_dir / FOLDER
    digest = hashlib.sha256()
    for path, label in recordings:
        status = path.stat()
        entry = [path.relative_to(root).as_posix(), label, status.st_size, status.st_mtime_ns]
        digest.update(json.dumps(entry).encode() + b"\n")
    return digest.hexdigest()


def manifest(framing: Framing, split: str, recordings: list[tuple[Path, int]], fingerprint: str) -> dict:
    """The manifest stored beside a split's cache (as read back from JSON); a cache is
    used only if its manifest is equal."""
    return _as_json({
        "framing": framing_key(framing),
        "split": split,
        "recordings": len(recordings),
        "fingerprint": fingerprint,
    })


def _as_json(value: dict) -> dict:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value))


def read_manifest(path: Path) -> dict | None:
    """The manifest at ``path``, or None if it is missing or unreadable."""
    try:
        contents = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return contents if isinstance(contents, dict) else None


def convert(
    recordings: list[tuple[Path, int]],
    paths: CachePaths,
    contents: dict,
    framing: Framing = PAPER_FRAMING,
) -> None:
    """Converts recordings into the cache files, replacing any old ones; the manifest
    ``contents`` is written last, so an interrupted conversion leaves no valid cache."""
    paths.frames.parent.mkdir(parents=True, exist_ok=True)
    temporary = f".tmp-{uuid.uuid4().hex}"
    frames_tmp = paths.frames.with_name(paths.frames.name + temporary)
    labels_tmp = paths.labels.with_name(paths.labels.name + temporary)
    manifest_tmp = paths.manifest.with_name(paths.manifest.name + temporary)
    try:
        frames = np.lib.format.open_memmap(
            frames_tmp, mode="w+", dtype=np.float32, shape=(len(recordings), *framing.frame_shape)
        )
        for index, (path, _) in enumerate(recordings):
            frames[index] = events_to_frames(read_events(path), framing)
            if (index + 1) % 1000 == 0:
                logger.info("CIFAR10-DVS: converted %d / %d recordings", index + 1, len(recordings))
        frames.flush()
        del frames
        with open(labels_tmp, "wb") as labels_file:
            np.save(labels_file, np.asarray([label for _, label in recordings], np.int32))
        manifest_tmp.write_text(json.dumps(contents, indent=1, sort_keys=True))
        paths.manifest.unlink(missing_ok=True)  # the old cache is invalid from here on
        os.replace(labels_tmp, paths.labels)
        os.replace(frames_tmp, paths.frames)
        os.replace(manifest_tmp, paths.manifest)
    finally:
        for leftover in (frames_tmp, labels_tmp, manifest_tmp):
            leftover.unlink(missing_ok=True)


def load_split(
    data_dir: Path, cache_dir: Path, split: str, framing: Framing = PAPER_FRAMING
) -> tuple[np.ndarray, np.ndarray]:
    """(frames float32 [N, *framing.frame_shape] memory-mapped, labels int32 [N]) of a
    split, converting the recordings into the cache first unless it matches them."""
    paths = cache_paths(cache_dir, split, framing)
    cached = read_manifest(paths.manifest)
    cache_present = cached is not None and paths.frames.is_file() and paths.labels.is_file()
    same_framing = cache_present and cached.get("framing") == _as_json(framing_key(framing))
    if not (data_dir / FOLDER).is_dir() and same_framing:
        logger.warning(
            "CIFAR10-DVS: no recordings under %s; using the cache %s of %s recordings "
            "without checking it against them", data_dir / FOLDER, paths.frames, cached["recordings"],
        )
    else:
        recordings = split_recordings(list_recordings(data_dir), split)
        wanted = manifest(framing, split, recordings, recordings_fingerprint(data_dir, recordings))
        if not (cache_present and cached == wanted):
            reason = "its recordings changed" if cache_present else "no cache yet"
            logger.info(
                "CIFAR10-DVS: converting %d %s recordings into %s (%s)",
                len(recordings), split, paths.frames, reason,
            )
            convert(recordings, paths, wanted, framing)
    frames = np.load(paths.frames, mmap_mode="r")
    labels = np.load(paths.labels)
    if frames.shape[1:] != framing.frame_shape or len(frames) != len(labels):
        raise ValueError(
            f"corrupt CIFAR10-DVS cache {paths.frames} ({frames.shape}, {len(labels)} labels): "
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
    frames, labels = load_split(data_dir, cache_dir, request.split, PAPER_FRAMING)
    batches = array_batches(
        frames,
        labels,
        request,
        eval_preprocess=_eval_preprocess,
        train_preprocess=_train_preprocess if options.augment else None,
    )
    return batches, DatasetInfo("cifar10_dvs", NUM_CLASSES, len(labels), FRAME_SHAPE)
