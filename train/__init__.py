"""The training system, installed as ``glif_jax.train``: ``train_and_evaluate``, the jitted
steps, the CLI (glif-train, glif-eval, glif-plot). It needs glif-jax's [train] extra."""

from glif_jax.extras import check_installed

check_installed(("ml_collections", "orbax.checkpoint", "etils", "tqdm", "tensorboard"), "train",
                "glif_jax.train (glif-train, glif-eval, glif-plot)")
