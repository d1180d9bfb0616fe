"""Reads what PyTorch's ``torch.save`` wrote, without PyTorch and without running code from the file.

Two container formats exist (PyTorch's ``torch/serialization.py`` defines both):

- **zip** (``torch.save``'s default since PyTorch 1.6; the authors' README pins PyTorch
  1.10): a zip archive ``<name>/data.pkl`` (a protocol-2 pickle of the saved object) plus
  one record ``<name>/data/<key>`` of raw bytes per tensor storage, and optionally
  ``<name>/byteorder`` (``little`` or ``big``; absent means little-endian);
- **legacy** (``_use_new_zipfile_serialization=False``): five pickles back to back (a magic
  number, the protocol version 1001, system info, the object, the list of storage keys),
  then every storage as an int64 element count followed by its bytes.

In both, a tensor is pickled as a call of ``torch._utils._rebuild_tensor_v2(storage,
storage_offset, size, stride, requires_grad, backward_hooks)``, and its storage as a
*persistent id* ``("storage", torch.<Type>Storage, key, location, numel)``. The unpickler
here resolves only the globals of ``ALLOWED_GLOBALS`` (tensor rebuilding, the storage
types and ``collections.OrderedDict``); any other global, such as
``os.system`` or ``builtins.eval``, raises :class:`UnsafeCheckpointError` naming it before
anything is called. Tensors come back as NumPy arrays of the storage's dtype with the
tensor's shape (C order; strides and storage offset are applied and bounds-checked).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import tarfile
import zipfile
from typing import Any, BinaryIO, Callable

import ml_dtypes
import numpy as np

from glif_jax.gated_lif.errors import GatedLIFFormatError, UnsafeCheckpointError

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
"""First pickle of a legacy (non-zip) ``torch.save`` file."""
LEGACY_PROTOCOL_VERSION = 1001
GIT_LFS_POINTER = b"version https://git-lfs"
"""How a Git LFS pointer file begins (what a clone without LFS holds instead of a large file)."""

STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
}
"""PyTorch's typed storage classes (pickled as globals of module ``torch``) and their element dtypes."""


class _ReadOnly:
    """Attributes set once: a pickle's BUILD opcode cannot change (or add to) these objects."""

    __slots__ = ()

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")


class StorageType(_ReadOnly):
    """Stands for a ``torch.<Type>Storage`` class inside a pickle; not callable."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: np.dtype):
        self._set(name=name, dtype=dtype)

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class StorageRef(_ReadOnly):
    """A storage named by a persistent id: element dtype, key of its bytes, element count,
    and for legacy views ``(root key, element offset, element count)`` of a larger storage."""

    __slots__ = ("dtype", "key", "numel", "view")

    def __init__(self, dtype: np.dtype, key: str, numel: int, view: tuple[str, int, int] | None):
        self._set(dtype=dtype, key=key, numel=numel, view=view)


class TensorRef(_ReadOnly):
    """A tensor to rebuild once the storages are read: storage, element offset, shape, element strides."""

    __slots__ = ("storage", "offset", "shape", "strides")

    def __init__(self, storage: StorageRef, offset: int, shape: tuple[int, ...], strides: tuple[int, ...]):
        self._set(storage=storage, offset=offset, shape=shape, strides=strides)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                       for v in value):
        raise GatedLIFFormatError(f"tensor {what} must be a tuple of integers, got {value!r}")
    return tuple(value)


def rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *unused: Any) -> TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2`` (and ``_rebuild_tensor``): records the call."""
    if not isinstance(storage, StorageRef):
        raise GatedLIFFormatError(f"tensor rebuilt from {type(storage).__name__}, not from a storage")
    if not isinstance(storage_offset, int) or isinstance(storage_offset, bool):
        raise GatedLIFFormatError(f"tensor storage offset must be an integer, got {storage_offset!r}")
    shape, strides = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(shape) != len(strides):
        raise GatedLIFFormatError(f"tensor size {shape} and stride {strides} differ in length")
    return TensorRef(storage, storage_offset, shape, strides)


def rebuild_parameter(data: Any, *unused: Any) -> Any:
    """Stand-in for ``torch._utils._rebuild_parameter``: a parameter is its data."""
    if not isinstance(data, TensorRef):
        raise GatedLIFFormatError(f"parameter rebuilt from {type(data).__name__}, not from a tensor")
    return data


class ReadOnlyCall(_ReadOnly):
    """A function handed to the unpickler, which a pickle can call but not modify."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[..., Any]):
        self._set(function=function)

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,   # a built-in type: immutable
    ("torch._utils", "_rebuild_tensor_v2"): ReadOnlyCall(rebuild_tensor),
    ("torch._utils", "_rebuild_tensor"): ReadOnlyCall(rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): ReadOnlyCall(rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): ReadOnlyCall(rebuild_parameter),
    **{("torch", name): StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()},
}
"""The only globals a checkpoint may name, and what each resolves to here: what a state dict
(with optimizer and scheduler state) needs. None of them can run code from the file: the
tensor functions only record their (type-checked) arguments, the storage types are inert
tokens, and nothing returned can be changed by the pickle afterwards."""


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only ``ALLOWED_GLOBALS`` and turns storage
    persistent ids into :class:`StorageRef`."""

    def __init__(self, file: BinaryIO, source: str):
        super().__init__(file)
        self.source = source
        self.storages: dict[str, StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self.source}: refusing to load the global {module}.{name}: a checkpoint may only "
                "name PyTorch's tensor-rebuild functions, its storage types and collections.OrderedDict") from None

    def persistent_load(self, pid: Any) -> StorageRef:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise GatedLIFFormatError(f"{self.source}: unknown persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, StorageType):
            raise GatedLIFFormatError(f"{self.source}: storage of type {storage_type!r}")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise GatedLIFFormatError(f"{self.source}: malformed storage id {pid!r}")
        if view is not None:
            if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                    and all(isinstance(v, int) and v >= 0 for v in view[1:])):
                raise GatedLIFFormatError(f"{self.source}: malformed storage view {view!r}")
            view = (view[0], view[1], view[2])
        ref = StorageRef(storage_type.dtype, key, numel, view)
        self.storages.setdefault(key, ref)
        return ref


def _unpickle(file: BinaryIO, source: str) -> tuple[Any, RestrictedUnpickler]:
    unpickler = RestrictedUnpickler(file, source)
    try:
        return unpickler.load(), unpickler
    except GatedLIFFormatError:
        raise
    except Exception as error:   # truncated data, bad opcodes, a non-callable called, ...
        raise GatedLIFFormatError(f"{source}: not a readable pickle ({type(error).__name__}: {error})") from error


def _storage_array(raw: bytes, dtype: np.dtype, numel: int, little_endian: bool, where: str) -> np.ndarray:
    """``numel`` elements of ``dtype`` from ``raw`` (native byte order)."""
    nbytes = numel * dtype.itemsize
    if len(raw) < nbytes:
        raise GatedLIFFormatError(f"{where}: storage holds {len(raw)} bytes, {numel} elements of {dtype} need {nbytes}")
    stored = dtype.newbyteorder("<" if little_endian else ">") if dtype.itemsize > 1 else dtype
    return np.frombuffer(raw, stored, count=numel).astype(dtype, copy=True)


def _materialise(tensor: TensorRef, storage: np.ndarray, where: str) -> np.ndarray:
    """The tensor's elements as a C-ordered NumPy array, after checking they lie inside ``storage``."""
    if tensor.offset < 0 or any(s < 0 for s in tensor.shape) or any(s < 0 for s in tensor.strides):
        raise GatedLIFFormatError(f"{where}: negative offset, size or stride in a tensor "
                                  f"(offset {tensor.offset}, size {tensor.shape}, stride {tensor.strides})")
    if 0 in tensor.shape:
        return np.zeros(tensor.shape, storage.dtype)
    last = tensor.offset + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.strides))
    if last >= storage.size:
        raise GatedLIFFormatError(f"{where}: tensor of size {tensor.shape}, stride {tensor.strides} at offset "
                                  f"{tensor.offset} reaches element {last} of a storage of {storage.size}")
    base = storage[tensor.offset:]
    strided = np.lib.stride_tricks.as_strided(base, tensor.shape, [s * storage.itemsize for s in tensor.strides],
                                              writeable=False)
    return np.array(strided, order="C")


def _resolve(obj: Any, tensor: Callable[[TensorRef], np.ndarray], storage: Callable[[StorageRef], np.ndarray]) -> Any:
    """``obj`` with every :class:`TensorRef` / :class:`StorageRef` replaced by its array."""
    if isinstance(obj, TensorRef):
        return tensor(obj)
    if isinstance(obj, StorageRef):
        return storage(obj)
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((key, _resolve(value, tensor, storage)) for key, value in obj.items())
    if isinstance(obj, dict):
        return {key: _resolve(value, tensor, storage) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_resolve(value, tensor, storage) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(value, tensor, storage) for value in obj)
    return obj


Storages = Callable[[StorageRef], np.ndarray]


def _read_zip(path: str, archive: zipfile.ZipFile) -> tuple[Any, Storages]:
    """The unpickled object (tensors as references) and the lookup of its storages' arrays."""
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(pickles) != 1:
        raise GatedLIFFormatError(f"{path}: a zip file, but not one written by torch.save "
                                  f"(expected one '<name>/data.pkl', found {pickles or 'none'})")
    prefix = pickles[0][: -len("data.pkl")]
    little_endian = True
    if f"{prefix}byteorder" in archive.namelist():
        order = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise GatedLIFFormatError(f"{path}: unknown byte order {order!r}")
        little_endian = order == "little"
    obj, _ = _unpickle(io.BytesIO(archive.read(pickles[0])), path)
    storages: dict[tuple[str, str], np.ndarray] = {}

    def storage(ref: StorageRef) -> np.ndarray:
        if (ref.key, ref.dtype.str) not in storages:
            record = f"{prefix}data/{ref.key}"
            try:
                raw = archive.read(record)
            except KeyError:
                raise GatedLIFFormatError(f"{path}: storage record {record!r} is missing") from None
            storages[(ref.key, ref.dtype.str)] = _storage_array(raw, ref.dtype, ref.numel, little_endian,
                                                                f"{path}:{record}")
        return storages[(ref.key, ref.dtype.str)]

    return obj, storage


def _read_legacy(path: str, file: BinaryIO) -> tuple[Any, Storages]:
    """As :func:`_read_zip`, for the format of ``torch.save`` before PyTorch 1.6."""
    magic, _ = _unpickle(file, path)
    if magic != LEGACY_MAGIC_NUMBER:
        raise GatedLIFFormatError(f"{path}: neither a zip archive nor a legacy torch.save file (no magic number)")
    version, _ = _unpickle(file, path)
    if version != LEGACY_PROTOCOL_VERSION:
        raise GatedLIFFormatError(f"{path}: legacy torch.save protocol {version!r}, expected {LEGACY_PROTOCOL_VERSION}")
    system, _ = _unpickle(file, path)
    little_endian = bool(system.get("little_endian", True)) if isinstance(system, dict) else True
    obj, unpickler = _unpickle(file, path)
    keys, _ = _unpickle(file, path)
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise GatedLIFFormatError(f"{path}: malformed list of storage keys")
    roots: dict[str, np.ndarray] = {}
    count_format = "<q" if little_endian else ">q"
    for key in keys:
        if key not in unpickler.storages:
            raise GatedLIFFormatError(f"{path}: storage {key!r} is listed but no tensor uses it")
        ref = unpickler.storages[key]
        header = file.read(8)
        if len(header) != 8:
            raise GatedLIFFormatError(f"{path}: file ends before storage {key!r}")
        (numel,) = struct.unpack(count_format, header)
        if numel < 0:
            raise GatedLIFFormatError(f"{path}: storage {key!r} claims {numel} elements")
        raw = file.read(numel * ref.dtype.itemsize)
        roots[key] = _storage_array(raw, ref.dtype, numel, little_endian, f"{path}: storage {key!r}")

    def storage(ref: StorageRef) -> np.ndarray:
        root_key, offset, numel = ref.view if ref.view is not None else (ref.key, 0, ref.numel)
        if root_key not in roots:
            raise GatedLIFFormatError(f"{path}: storage {root_key!r} is used but not stored")
        root = roots[root_key]
        if offset + numel > root.size:
            raise GatedLIFFormatError(f"{path}: view of {numel} elements at {offset} exceeds storage {root_key!r}")
        return root[offset:offset + numel]

    return obj, storage


def read_torch_file(path: str | os.PathLike) -> Any:
    """The object that ``torch.save`` wrote to ``path``, every tensor a NumPy array.

    Reads the zip and the legacy format; no PyTorch needed, nothing in the file is run.
    Dicts, ``OrderedDict``s, lists, tuples, numbers and strings come back as such.
    Raises :class:`UnsafeCheckpointError` for a global outside ``ALLOWED_GLOBALS``
    and :class:`GatedLIFFormatError` for anything else that is not such a file.
    """
    path = os.fspath(path)

    def resolved(obj: Any, storage: Storages) -> Any:
        return _resolve(obj, lambda ref: _materialise(ref, storage(ref.storage), path), storage)

    try:
        with open(path, "rb") as file:
            if zipfile.is_zipfile(file):
                file.seek(0)
                with zipfile.ZipFile(file) as archive:
                    return resolved(*_read_zip(path, archive))   # while the archive is open
            file.seek(0)
            if file.read(len(GIT_LFS_POINTER)) == GIT_LFS_POINTER:
                raise GatedLIFFormatError(f"{path}: a Git LFS pointer, not the checkpoint: fetch the file itself "
                                          "(git lfs pull, or the repository's download link)")
            file.seek(0)
            if tarfile.is_tarfile(file):
                raise GatedLIFFormatError(f"{path}: the tar format of PyTorch before 0.4 is not supported")
            file.seek(0)
            return resolved(*_read_legacy(path, file))
    except RecursionError:
        raise GatedLIFFormatError(f"{path}: the pickled object is nested too deeply (or refers to itself)") from None
    except GatedLIFFormatError:
        raise
    except (TypeError, ValueError, AttributeError, OverflowError, KeyError, zipfile.BadZipFile) as error:
        raise GatedLIFFormatError(f"{path}: not a readable torch.save file ({type(error).__name__}: {error})") \
            from error
