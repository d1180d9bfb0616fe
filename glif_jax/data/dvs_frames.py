"""CIFAR10-DVS recordings -> event-count frames (the paper's data setup).

A recording's events are cut into FRAMES slices of equal event count with tonic's
ToFrame(sensor_size=(128, 128, 2), n_event_bins=16) — every slice holds N // 16 events,
the last N % 16 events are dropped — and each slice is integrated into per-pixel,
per-polarity event counts. The frames are then resized from 128 x 128 to 48 x 48 by
bilinear interpolation without antialiasing, with half-pixel centres (as PyTorch's
F.interpolate(mode="bilinear", align_corners=False), which the authors' Resize did).
Counts are not normalised: the network integrates them as they are. `Framing` holds
these numbers; `PAPER_FRAMING` is the paper's setting.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SENSOR_SIZE = (128, 128, 2)  # tonic's (width, height, polarities)
FRAMES = 16
FRAME_SIZE = 48


@dataclasses.dataclass(frozen=True)
class Framing:
    """How a recording becomes frames.

    Attributes:
      frames: slices of equal event count (the network's time steps).
      frame_size: side of the square frames after resizing.
      sensor_size: the camera's (width, height, polarities).
    """

    frames: int = FRAMES
    frame_size: int = FRAME_SIZE
    sensor_size: tuple[int, int, int] = SENSOR_SIZE

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        """[T, H, W, polarities] of one converted recording."""
        return (self.frames, self.frame_size, self.frame_size, self.sensor_size[2])


PAPER_FRAMING = Framing()


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """float32 [out_size, in_size] M with resized = M @ signal along one axis
    (half-pixel centres, source coordinates clamped to the edges)."""
    scale = in_size / out_size
    source = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    upper_weight = source - lower
    matrix = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lower), 1.0 - upper_weight)
    np.add.at(matrix, (rows, upper), upper_weight)
    return matrix.astype(np.float32)


def resize_frames(frames: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """Bilinear resize of frames [T, H, W, C] to float32 [T, size, size, C]."""
    rows = bilinear_matrix(frames.shape[1], size)
    columns = bilinear_matrix(frames.shape[2], size)
    planes = np.moveaxis(frames.astype(np.float32), -1, 1)  # [T, C, H, W]
    resized = rows @ planes @ columns.T  # [T, C, size, size]
    return np.ascontiguousarray(np.moveaxis(resized, 1, -1))


def events_to_frames(events: np.ndarray, framing: Framing = PAPER_FRAMING) -> np.ndarray:
    """Structured events (fields t, x, y, p) of one recording -> float32
    framing.frame_shape resized event counts (rows = y, columns = x, channel = polarity)."""
    from glif_jax.extras import require

    ToFrame = require("tonic.transforms", "dvs", "Converting CIFAR10-DVS events to frames (tonic)").ToFrame

    to_frame = ToFrame(sensor_size=tuple(framing.sensor_size), n_event_bins=framing.frames)
    counts = to_frame(events)  # [T, P, H, W]
    return resize_frames(np.moveaxis(counts, 1, -1), framing.frame_size)
