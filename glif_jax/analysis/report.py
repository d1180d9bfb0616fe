"""Everything ``glif-plot`` writes for one run: figures (PNG, optionally PDF) and tidy tables.

    written = write_report("/tmp/run", "/tmp/run/figures")

Files in the output directory:

- ``gates.png``: α, β, γ per layer, distribution over channels, initial range shaded (Fig. 1);
- ``primitives.png``: V_th, V_re, τ_exp, τ_lin, same style, initial value dashed (Fig. 2);
- ``conductance.png``: g^t per layer and time step (another neuron's per-time-step parameter X:
  ``X_per_step.png``); a neuron's parameters of the group "weights": ``neuron_weights.png``;
  figures of groups the neuron has no parameters in (e.g. PLIF's gates) are not written;
- ``evolution.png``: median and interquartile range per layer vs epoch, from the
  initialisation over every checkpoint of the run;
- ``firing_rates.png``: firing rates per layer and time step, silent/saturated channels, on
  one batch of the evaluation split (skipped with a message if the dataset is unavailable);
- ``learned_values.csv|json``: every constrained value of the described checkpoint (tidy);
- ``learned_summary.csv|json``: per checkpoint, layer and parameter: quantiles over channels;
- ``firing_rates.csv``: rate per layer, time step and channel.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable, Sequence

from glif_jax.analysis import run_model
from glif_jax.analysis.extraction import NeuronLayer, neuron_layers
from glif_jax.analysis.initial import initial_distributions
from glif_jax.analysis.plots.distributions import (per_time_step_labels, plot_conductance, plot_gates,
                                                   plot_neuron_weights, plot_primitives)
from glif_jax.analysis.plots.evolution import plot_evolution
from glif_jax.analysis.plots.firing import plot_firing_rates
from glif_jax.analysis.plots.style import save_figure
from glif_jax.analysis.runs import LoadedCheckpoint, Run, load_checkpoint, open_run
from glif_jax.analysis.spikes import firing_rates
from glif_jax.analysis.tables import rates_table, summary_table, values_table, write_table
from glif_jax.extras import require
from glif_jax.models import ModelOptions

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    """which/step: the checkpoint to describe when a work directory is given; formats: "png",
    "pdf"; batch_size: eval examples for the firing rates (0 = no firing-rate figure);
    data_dir: overrides ``config.dataset.data_dir``."""

    which: str = "latest"
    step: int | None = None
    formats: tuple[str, ...] = ("png",)
    batch_size: int = 32
    data_dir: str | None = None


def _run_label(run: Run, checkpoint: LoadedCheckpoint) -> str:
    ref = checkpoint.ref
    where = f"{ref.kind} checkpoint, step {ref.step}"
    if checkpoint.epoch is not None:
        where += f" (epoch {checkpoint.epoch:g})"
    if run.config is None:
        return where
    model = run.config.model
    neuron = model.neuron
    kind = neuron.kind + (", hard gates" if neuron.get("gates", "soft") == "hard" else "")
    granularity = "channel-wise" if model.get("channel_wise", True) else "layer-wise"
    return (f"{model.name} ({kind}, {granularity}) on {run.config.dataset.name}, T={model.time_steps} — {where}")


def write_report(path: str | Path, out: str | Path, options: ReportOptions = ReportOptions(),
                 say: Callable[[str], None] = print) -> list[Path]:
    """Reads the run at ``path`` and writes the figures and tables listed in the module doc to
    ``out``; ``say`` receives one line per file and per skipped figure. Returns the written paths."""
    out = Path(out)
    run = open_run(path, which=options.which, step=options.step)
    checkpoint = load_checkpoint(run.selected)
    config = run.config
    written: list[Path] = []

    def save(figure, stem: str) -> None:
        paths = save_figure(figure, out, stem, options.formats)
        written.extend(paths)
        for saved in paths:
            say(f"wrote {saved}")

    images, num_classes, data_problem = None, None, None
    if config is not None and options.batch_size > 0:
        try:
            images, num_classes = run_model.eval_batch(config, options.batch_size, options.data_dir)
        except (OSError, ImportError, ValueError) as error:
            data_problem = f"{type(error).__name__}: {error}"
    model = ModelOptions.from_config(config.model) if config is not None else None
    order = _network_order(model, num_classes, images)
    neuron = model.neuron if model is not None else None
    layers = neuron_layers(checkpoint.params, order, neuron=neuron)
    initial = None
    if model is not None:
        initial = initial_distributions(tuple(layers[0].values), model.neuron_init, neuron=neuron)
    label = _run_label(run, checkpoint)
    hard_gates = model is not None and model.neuron.gates == "hard"

    groups = {parameter.group for layer in layers for parameter in layer.parameters() if not parameter.per_time_step}
    if "gates" in groups:
        save(plot_gates(layers, initial=initial, run_label=label, hard_gates=hard_gates), "gates")
    if "primitives" in groups:
        save(plot_primitives(layers, initial=initial, run_label=label), "primitives")
    if "weights" in groups:
        save(plot_neuron_weights(layers, initial=initial, run_label=label), "neuron_weights")
    for timed in per_time_step_labels(layers):
        stem = "conductance" if timed.name == "cond" else f"{timed.name}_per_step"   # GLIF's g^t keeps its file name
        save(plot_conductance(layers, initial=initial, run_label=label, name=timed.name), stem)
    for table_format in (".csv", ".json"):
        written.append(write_table(values_table(layers, step=run.selected.step, checkpoint=run.selected.kind),
                                   out / f"learned_values{table_format}"))
        say(f"wrote {written[-1]}")

    snapshots, summaries, x_label = _history(run, checkpoint, order, neuron)
    for table_format in (".csv", ".json"):
        written.append(write_table(summaries, out / f"learned_summary{table_format}"))
        say(f"wrote {written[-1]}")
    if len(snapshots) + (initial is not None) >= 2:
        save(plot_evolution(snapshots, initial=initial, x_label=x_label,
                            run_label=label.split(" — ")[0] if config is not None else ""), "evolution")
    else:
        say("skipped evolution.png: needs two checkpoints (or the run's config.json for the initial values)")

    if images is not None:
        rates = firing_rates(model.build(num_classes), checkpoint.variables, images)
        batch_label = f"{len(images)} {config.dataset.name} evaluation examples (eval mode)"
        save(plot_firing_rates(rates, order, run_label=label, batch_label=batch_label), "firing_rates")
        written.append(write_table(rates_table(rates, order, step=run.selected.step), out / "firing_rates.csv"))
        say(f"wrote {written[-1]}")
    elif config is None:
        say("skipped firing_rates.png: no config.json, so the model and its data are unknown")
    elif options.batch_size <= 0:
        say("skipped firing_rates.png: no batch requested (--batch-size 0)")
    else:
        say(f"skipped firing_rates.png: the {config.dataset.name!r} dataset is not available ({data_problem}); "
            "point --data-dir at it to get this figure")
    return written


def _network_order(model: ModelOptions | None, num_classes: int | None, images) -> list[str] | None:
    """The GLIF layers in call order; None (parameter-tree order) without the run's model."""
    if model is None:
        return None
    # The layer structure does not depend on the number of classes (no neuron in the heads).
    return run_model.model_order(model, num_classes or 10, images)


def _history(run: Run, selected: LoadedCheckpoint, order: Sequence[str] | None, neuron=None):
    """(x, layers) of every checkpoint, their summary table, and the x label ("epoch" | "step")."""
    loaded: list[LoadedCheckpoint] = []
    for ref in run.checkpoints:
        loaded.append(selected if ref.step == selected.ref.step else load_checkpoint(ref))
    by_epoch = all(checkpoint.epoch is not None for checkpoint in loaded)
    snapshots: list[tuple[float, list[NeuronLayer]]] = []
    tables = []
    for checkpoint in loaded:
        layers = neuron_layers(checkpoint.params, order, neuron=neuron)
        x = checkpoint.epoch if by_epoch else float(checkpoint.ref.step)
        snapshots.append((x, layers))
        tables.append(summary_table(layers, step=checkpoint.ref.step, epoch=checkpoint.epoch,
                                    checkpoint=checkpoint.ref.kind))
    pd = require("pandas", "plot", "The glif-plot tables")

    return snapshots, pd.concat(tables, ignore_index=True), "epoch" if by_epoch else "training step"

