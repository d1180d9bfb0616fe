"""What goes wrong when reading or converting a checkpoint of the authors' GLIF code."""

from __future__ import annotations


class GatedLIFFormatError(ValueError):
    """A file or state dict that is not (or does not fit) a checkpoint of the authors' code.

    The message names what does not fit: the file, the key, both shapes, the architecture.
    """


class UnsafeCheckpointError(GatedLIFFormatError):
    """A pickle that asks for a global outside the tensor-rebuild allowlist (e.g. ``os.system``).

    Raised before anything from the file is called; the message names the global.
    """
