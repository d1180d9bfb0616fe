"""Images from .npz files ("npz" dataset), e.g. CIFAR-10 as uint8 arrays.

Each file holds `x` uint8 [N, H, W, C] and `y` integer labels [N], optionally `classes`
(names; their count is num_classes, else max(y) + 1, which is logged as a warning).
config.dataset.train_path / eval_path name the files of the "train" / "eval" split;
config.dataset.normalization names the mean/std ("cifar10", "cifar100", "imagenet").
Preprocessing is CIFAR's, as in the paper: train-time random crop with 4-pixel zero
padding and flip, then scale and normalise.

Labels are checked when a file is read: integer dtype, in [0, len(classes)) (or >= 0
without `classes`). The class count of a run is the train file's; building the "eval"
split checks its labels (and its `classes` count, when both files have one) against it
and reports that count, so the eval pass scores only classes the network's head has. If
the train file is absent (e.g. evaluating elsewhere) the eval file's own count is used.
That check reads the train file's labels and class names and the header of its images
(dtype and shape, checked as well), never the images themselves.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from glif_jax.data import cifar
from glif_jax.data.batching import array_batches
from glif_jax.data.errors import DatasetNotFoundError
from glif_jax.data.info import DatasetInfo
from glif_jax.data.options import SPLIT_FILES, BatchRequest, DatasetOptions

logger = logging.getLogger(__name__)

SHOWN_BAD_LABELS = 5  # distinct out-of-range values quoted in an error message

# (path, max(y) + 1) already warned about. Kept per process, not per build: a run's train
# and eval builds both consult the train file (and glif-eval, or a second run in the same
# process, builds them again), and the inferred count deserves one warning, not one each.
_logged_inferred_counts: set[tuple[str, int]] = set()


@dataclasses.dataclass(frozen=True)
class NpzFile:
    """The checked contents of one .npz file.

    Attributes:
      path: the file.
      images: uint8 [N, H, W, C]; None when only the labels were read.
      labels: int32 [N] in [0, num_classes).
      num_classes: len(classes) when the file has a `classes` array, else max(y) + 1.
      has_class_names: whether the file has a `classes` array.
    """

    path: str
    images: np.ndarray | None
    labels: np.ndarray
    num_classes: int
    has_class_names: bool


def read_file(path: str, *, with_images: bool = True) -> NpzFile:
    """The checked contents of the .npz file at ``path``.

    ``with_images=False`` reads the labels and class names only; the images' dtype and
    shape are checked from their .npy header, and ``images`` is None."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise DatasetNotFoundError(
            "npz",
            path,
            "Point config.dataset.train_path / eval_path at .npz files holding `x` uint8 "
            "[N, H, W, C] and `y` integer labels [N].",
        )
    return _read(path, with_images)


def out_of_range_labels(labels: np.ndarray, num_classes: int | None) -> str | None:
    """None if every label is in [0, num_classes) (num_classes None: >= 0), else a
    description of the bad ones: how many examples and a few distinct values."""
    bad = labels < 0 if num_classes is None else (labels < 0) | (labels >= num_classes)
    count = int(np.count_nonzero(bad))
    if count == 0:
        return None
    values = np.unique(labels[bad])
    shown = ", ".join(str(value) for value in values[:SHOWN_BAD_LABELS])
    more = f" (and {len(values) - SHOWN_BAD_LABELS} more values)" if len(values) > SHOWN_BAD_LABELS else ""
    return f"{count} of {len(labels)} examples out of range (labels {shown}{more})"


def _array_layout(arrays: np.lib.npyio.NpzFile, name: str) -> tuple[np.dtype, tuple[int, ...]]:
    """(dtype, shape) of the array ``name`` of an open .npz file, from its .npy header when
    the header has a format NumPy reads publicly (else from the array itself)."""
    member = f"{name}.npy"
    if member in arrays.zip.namelist():
        with arrays.zip.open(member) as stream:
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(np.lib.format.read_magic(stream))
            if read_header is not None:
                shape, _, dtype = read_header(stream)
                return dtype, shape
    array = arrays[name]
    return array.dtype, array.shape


def _read(path: str, with_images: bool) -> NpzFile:
    """``read_file``: reads and checks the file."""
    with np.load(path) as arrays:
        missing = {"x", "y"} - set(arrays.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)} (needs x and y)")
        images = arrays["x"] if with_images else None
        image_dtype, image_shape = (images.dtype, images.shape) if with_images else _array_layout(arrays, "x")
        labels = arrays["y"]
        has_class_names = "classes" in arrays.files
        class_count = len(arrays["classes"]) if has_class_names else None
    if image_dtype != np.uint8 or len(image_shape) != 4:
        raise ValueError(
            f"{path}: x must be uint8 [N, H, W, C], got {image_dtype} {image_shape}"
        )
    if labels.shape != (image_shape[0],):
        raise ValueError(f"{path}: y must be [N={image_shape[0]}], got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{path}: y must hold integer class indices, got dtype {labels.dtype}"
        )
    if class_count is None and len(labels) == 0:
        raise ValueError(f"{path} holds no examples and no `classes` array: no class count")
    problem = out_of_range_labels(labels, class_count)
    if problem:
        if has_class_names:
            expected = f"lie in [0, {class_count}) (len(classes) = {class_count})"
        else:
            expected = "be >= 0"
        raise ValueError(f"{path}: labels y must {expected}; {problem}")
    if class_count is None:
        class_count = int(labels.max()) + 1
    return NpzFile(path, images, labels.astype(np.int32), class_count, has_class_names)


def _log_inferred_class_count(counted: NpzFile) -> None:
    """Warns, once per file and count, that the head's class count is max(y) + 1."""
    if counted.has_class_names or (counted.path, counted.num_classes) in _logged_inferred_counts:
        return
    _logged_inferred_counts.add((counted.path, counted.num_classes))
    logger.warning(
        "npz %s has no `classes` array: using max(y)+1 = %d classes",
        counted.path, counted.num_classes,
    )


def _read_argument(path: str, argument: str, *, with_images: bool = True) -> NpzFile:
    """``read_file``, its errors prefixed with the config argument that names the file."""
    try:
        return read_file(path, with_images=with_images)
    except ValueError as error:
        raise ValueError(f"config.dataset.{argument}: {error}") from error


def _eval_against_train(options: DatasetOptions, evaluated: NpzFile) -> int:
    """The class count of the eval split: the train file's, after checking that the eval
    labels (and `classes` count) agree with it; the eval file's own if there is no train file."""
    if not options.train_path or not os.path.isfile(os.path.expanduser(options.train_path)):
        logger.info(
            "npz: no train file (config.dataset.train_path=%r): eval labels of %s checked "
            "against its own class count %d only", options.train_path, evaluated.path,
            evaluated.num_classes,
        )
        _log_inferred_class_count(evaluated)
        return evaluated.num_classes
    trained = _read_argument(options.train_path, "train_path", with_images=False)
    _log_inferred_class_count(trained)
    if trained.has_class_names and evaluated.has_class_names and trained.num_classes != evaluated.num_classes:
        raise ValueError(
            f"config.dataset.eval_path {evaluated.path} has {evaluated.num_classes} classes but "
            f"config.dataset.train_path {trained.path} has {trained.num_classes} "
            "(lengths of their `classes` arrays): both splits must share one class list"
        )
    problem = out_of_range_labels(evaluated.labels, trained.num_classes)
    if problem:
        source = "len(classes)" if trained.has_class_names else "max(y)+1, it has no `classes` array"
        raise ValueError(
            f"config.dataset.eval_path {evaluated.path}: labels must lie in "
            f"[0, {trained.num_classes}), the classes of config.dataset.train_path "
            f"{trained.path} ({source}); {problem}"
        )
    return trained.num_classes


def build(options: DatasetOptions, request: BatchRequest):
    """(iterable of batches, DatasetInfo) for the "npz" dataset.

    DatasetInfo.num_classes is the train file's class count for both splits."""
    options.check_split(request.split)
    argument = SPLIT_FILES[request.split]
    split_file = _read_argument(getattr(options, argument), argument)
    if request.split == "train":
        _log_inferred_class_count(split_file)
        num_classes = split_file.num_classes
    else:
        num_classes = _eval_against_train(options, split_file)
    train, evaluate = cifar.preprocessing(options.normalization)
    batches = array_batches(
        split_file.images,
        split_file.labels,
        request,
        eval_preprocess=evaluate,
        train_preprocess=train if options.augment else None,
    )
    info = DatasetInfo("npz", num_classes, len(split_file.labels), tuple(split_file.images.shape[1:]))
    return batches, info
