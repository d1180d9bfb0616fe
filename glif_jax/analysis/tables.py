"""Tidy tables (one row per value) of learned neuron parameters and firing rates, for pandas.

    frame = values_table(neuron_layers(params, order), step=1000)
    write_table(frame, "learned_values.csv")        # or .json (records); pandas.read_csv / read_json

Columns of :func:`values_table`: ``layer_index`` (network order), ``layer`` (short name),
``path`` (module path), ``parameter`` (leaf name), ``symbol`` (α, V_th, ...), ``group``
("gate" | "primitive"), ``channel`` and ``time_step`` (nullable integers: empty for
layer-wise values / for parameters not per time step, i.e. all of GLIF's but ``cond``),
``value`` (constrained: what the neuron uses), then
any extra constant columns given (e.g. ``step``). pandas is imported on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from glif_jax.analysis.extraction import NeuronLayer
from glif_jax.analysis.naming import label_of, readable_names
from glif_jax.extras import require

TABLE_FORMATS = (".csv", ".json")


def _value_rows(per_time_step: bool, values: np.ndarray) -> dict[str, np.ndarray]:
    """Columns for one parameter of one layer: channel, time_step, value (flattened)."""
    values = np.asarray(values, np.float64)
    if per_time_step:
        time_steps = values.shape[0]
        channels = values.shape[1] if values.ndim == 2 else None
        time_index = np.repeat(np.arange(time_steps), channels or 1)
        channel_index = np.tile(np.arange(channels), time_steps) if channels else None
    else:
        time_index = None
        channel_index = np.arange(values.size) if values.ndim == 1 else None
    count = values.size
    return {
        "channel": channel_index if channel_index is not None else np.full(count, -1),
        "time_step": time_index if time_index is not None else np.full(count, -1),
        "value": values.reshape(-1),
    }


def values_table(layers: Sequence[NeuronLayer], **constants: Any):
    """Every constrained value of every layer as a tidy ``pandas.DataFrame`` (see the module doc)."""
    pd = require("pandas", "plot", "The glif-plot tables")

    frames = []
    for layer in layers:
        for parameter in layer.parameters():
            name, values, label = parameter.name, layer.values[parameter.name], label_of(parameter)
            columns = _value_rows(label.per_time_step, values)
            frame = pd.DataFrame({
                "layer_index": layer.index, "layer": layer.name, "path": layer.path, "parameter": name,
                "symbol": label.symbol, "group": label.group, **columns,
            })
            frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    for column in ("channel", "time_step"):
        table[column] = table[column].astype("Int64").mask(table[column] < 0)
    for key, value in constants.items():
        table[key] = value
    return table


def summary_table(layers: Sequence[NeuronLayer], **constants: Any):
    """Per layer and parameter: ``count, mean, min, q1, median, q3, max`` over channels
    (per-time-step ones, GLIF's ``cond``: over channels and time steps), as a ``pandas.DataFrame``."""
    pd = require("pandas", "plot", "The glif-plot tables")

    rows = []
    for layer in layers:
        for parameter in layer.parameters():
            name, label = parameter.name, label_of(parameter)
            flat = np.asarray(layer.values[name], np.float64).reshape(-1)
            q1, median, q3 = np.quantile(flat, [0.25, 0.5, 0.75])
            rows.append({
                "layer_index": layer.index, "layer": layer.name, "path": layer.path, "parameter": name,
                "symbol": label.symbol, "group": label.group,
                "count": flat.size, "mean": flat.mean(), "min": flat.min(), "q1": q1, "median": median,
                "q3": q3, "max": flat.max(), **constants,
            })
    return pd.DataFrame(rows)


def rates_table(rates: Mapping[str, np.ndarray], order: Iterable[str] | None = None, **constants: Any):
    """Firing rates ``{path: [T, C]}`` as a tidy table: ``layer_index, layer, path, time_step,
    channel, rate`` (rows in network order when ``order`` is given)."""
    pd = require("pandas", "plot", "The glif-plot tables")

    paths = list(order) if order is not None else list(rates)
    paths += [path for path in rates if path not in paths]
    frames = []
    for index, (path, name) in enumerate(zip(paths, readable_names(paths))):
        values = np.asarray(rates[path], np.float64)
        time_steps, channels = values.shape
        frames.append(pd.DataFrame({
            "layer_index": index, "layer": name, "path": path,
            "time_step": np.repeat(np.arange(time_steps), channels),
            "channel": np.tile(np.arange(channels), time_steps),
            "rate": values.reshape(-1),
        }))
    table = pd.concat(frames, ignore_index=True)
    for key, value in constants.items():
        table[key] = value
    return table


def write_table(table, path: str | Path) -> Path:
    """Writes a DataFrame as CSV or JSON (a list of records; missing values as null), by suffix."""
    path = Path(path)
    if path.suffix not in TABLE_FORMATS:
        raise ValueError(f"path: expected a file name ending in one of {TABLE_FORMATS}, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_json(path, orient="records", indent=1, double_precision=15)
    return path
