"""Checkpoints of the authors' GLIF code (CAS-CLab/Gated-LIF, PyTorch) in glif-jax, and back.

- :func:`from_gated_lif`: their ``.pth`` / ``.pth.tar`` (or state dict) → glif-jax model and variables;
- :func:`to_gated_lif`: glif-jax variables → their state dict (NumPy arrays in their layouts);
- :func:`save_gated_lif`: that state dict → a file in ``torch.save``'s format;
- :func:`describe_gated_lif`: what a checkpoint holds (architecture, classes, T, width, BN kind);
- :func:`read_state_dict`: their state dict (file or checkpoint dict) as NumPy arrays;
- :func:`read_torch_file`: any ``torch.save`` file of tensors, read safely as NumPy arrays.

None of them imports PyTorch.
"""

from glif_jax.gated_lif.convert import (GatedLIFCheckpoint, describe_gated_lif, from_gated_lif, read_state_dict,
                                        save_gated_lif, to_gated_lif)
from glif_jax.gated_lif.errors import GatedLIFFormatError, UnsafeCheckpointError
from glif_jax.gated_lif.layouts import NETWORKS
from glif_jax.gated_lif.pickle_reader import read_torch_file

__all__ = [
    "GatedLIFCheckpoint",
    "GatedLIFFormatError",
    "NETWORKS",
    "UnsafeCheckpointError",
    "describe_gated_lif",
    "from_gated_lif",
    "read_state_dict",
    "read_torch_file",
    "save_gated_lif",
    "to_gated_lif",
]
