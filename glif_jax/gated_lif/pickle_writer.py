"""Writes PyTorch's zip checkpoint format (what ``torch.save`` writes by default) without PyTorch.

The file is a zip archive with

- ``archive/data.pkl``: a protocol-2 pickle of the object, each NumPy array written as
  ``torch._utils._rebuild_tensor_v2(storage, 0, shape, C-order strides, False, OrderedDict())``
  with ``storage`` the persistent id ``("storage", torch.<Type>Storage, "<n>", "cpu", numel)``;
- ``archive/data/<n>``: the array's bytes, little-endian, each record's data 64-byte aligned;
- ``archive/byteorder`` (``little``) and ``archive/version`` (``3``).

``torch.load(path, weights_only=True)`` reads it: it names no global beyond the tensor
rebuild function, the storage types and ``collections.OrderedDict``. The pickle opcodes are
emitted here directly, so nothing of PyTorch has to be importable.
"""

from __future__ import annotations

import collections
import math
import os
import pickle
import struct
import zipfile
from typing import Any, Mapping

import numpy as np

from glif_jax.gated_lif.pickle_reader import STORAGE_DTYPES

ARCHIVE_NAME = "archive"
STORAGE_ALIGNMENT = 64
_STORAGE_TYPE_OF_DTYPE = {dtype: name for name, dtype in STORAGE_DTYPES.items()}
_ALIGNMENT_EXTRA_ID = 0x4246   # an unregistered zip extra-field id; readers skip unknown ids


class _PickleEmitter:
    """Protocol-2 pickle bytes for dicts, OrderedDicts, lists, tuples, str, int, float, bool,
    None and NumPy arrays (as tensors); the arrays' bytes are collected in ``storages``."""

    def __init__(self) -> None:
        self.out = bytearray(pickle.PROTO + bytes([2]))
        self.storages: list[np.ndarray] = []

    def finish(self) -> bytes:
        return bytes(self.out + pickle.STOP)

    def emit(self, obj: Any) -> None:
        if obj is None:
            self.out += pickle.NONE
        elif isinstance(obj, (bool, np.bool_)):
            self.out += pickle.NEWTRUE if obj else pickle.NEWFALSE
        elif isinstance(obj, (int, np.integer)):
            self._int(int(obj))
        elif isinstance(obj, (float, np.floating)):
            self.out += pickle.BINFLOAT + struct.pack(">d", float(obj))
        elif isinstance(obj, str):
            data = obj.encode("utf-8")
            self.out += pickle.BINUNICODE + struct.pack("<I", len(data)) + data
        elif isinstance(obj, np.ndarray):
            self._tensor(obj)
        elif isinstance(obj, collections.OrderedDict):
            self._global("collections", "OrderedDict")
            self.out += pickle.EMPTY_TUPLE + pickle.REDUCE
            self._items(obj)
        elif isinstance(obj, Mapping):
            self.out += pickle.EMPTY_DICT
            self._items(obj)
        elif isinstance(obj, list):
            self.out += pickle.EMPTY_LIST
            if obj:
                self.out += pickle.MARK
                for item in obj:
                    self.emit(item)
                self.out += pickle.APPENDS
        elif isinstance(obj, tuple):
            self.out += pickle.MARK
            for item in obj:
                self.emit(item)
            self.out += pickle.TUPLE
        elif hasattr(obj, "__array__"):
            self._tensor(np.asarray(obj))
        else:
            raise TypeError(f"save_gated_lif: cannot write a {type(obj).__name__} into a checkpoint")

    def _items(self, mapping: Mapping) -> None:
        if not mapping:
            return
        self.out += pickle.MARK
        for key, value in mapping.items():
            self.emit(key)
            self.emit(value)
        self.out += pickle.SETITEMS

    def _int(self, value: int) -> None:
        if 0 <= value < 2 ** 8:
            self.out += pickle.BININT1 + bytes([value])
        elif 0 <= value < 2 ** 16:
            self.out += pickle.BININT2 + struct.pack("<H", value)
        elif -2 ** 31 <= value < 2 ** 31:
            self.out += pickle.BININT + struct.pack("<i", value)
        else:
            data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            self.out += pickle.LONG1 + bytes([len(data)]) + data

    def _global(self, module: str, name: str) -> None:
        self.out += pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii")

    def _tensor(self, array: np.ndarray) -> None:
        dtype = np.dtype(array.dtype).newbyteorder("=")
        if dtype not in _STORAGE_TYPE_OF_DTYPE:
            raise TypeError(f"save_gated_lif: no PyTorch storage type for dtype {array.dtype}")
        key = str(len(self.storages))
        self.storages.append(np.ascontiguousarray(array, dtype.newbyteorder("<")))
        strides = tuple(math.prod(array.shape[axis + 1:]) for axis in range(array.ndim))
        self._global("torch._utils", "_rebuild_tensor_v2")
        self.out += pickle.MARK
        self.out += pickle.MARK
        self.emit("storage")
        self._global("torch", _STORAGE_TYPE_OF_DTYPE[dtype])
        self.emit(key)
        self.emit("cpu")
        self.emit(int(array.size))
        self.out += pickle.TUPLE + pickle.BINPERSID
        self.emit(0)
        self.emit(tuple(int(size) for size in array.shape))
        self.emit(strides)
        self.emit(False)
        self._global("collections", "OrderedDict")
        self.out += pickle.EMPTY_TUPLE + pickle.REDUCE
        self.out += pickle.TUPLE + pickle.REDUCE


def _write_aligned(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    """A stored (uncompressed) record whose data starts at a multiple of :data:`STORAGE_ALIGNMENT`."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    header_end = archive.fp.tell() + 30 + len(name.encode("utf-8"))
    padding = (-(header_end + 4)) % STORAGE_ALIGNMENT
    info.extra = struct.pack("<HH", _ALIGNMENT_EXTRA_ID, padding) + b"Z" * padding
    archive.writestr(info, data)


def write_torch_file(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` (nested dicts / lists of arrays, numbers, strings) in ``torch.save``'s zip format."""
    emitter = _PickleEmitter()
    emitter.emit(obj)
    records = [(f"{ARCHIVE_NAME}/data.pkl", emitter.finish()), (f"{ARCHIVE_NAME}/byteorder", b"little")]
    records += [(f"{ARCHIVE_NAME}/data/{index}", storage.tobytes())
                for index, storage in enumerate(emitter.storages)]
    records.append((f"{ARCHIVE_NAME}/version", b"3\n"))
    with zipfile.ZipFile(os.fspath(path), "w", zipfile.ZIP_STORED) as archive:
        for name, data in records:
            _write_aligned(archive, name, data)
