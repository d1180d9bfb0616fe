"""glif_jax.workdir: a run's config.json written and read back exactly; clear errors."""

from __future__ import annotations

import pytest

from glif_jax.workdir import WorkdirError, load_config, save_config
from tests.train_standins import small_config


def test_config_round_trip(tmp_path):
    config = small_config(num_epochs=7)
    save_config(tmp_path, config)
    loaded = load_config(tmp_path)
    assert loaded.to_json(sort_keys=True) == config.to_json(sort_keys=True)
    with pytest.raises(AttributeError):
        loaded.no_such_key = 1  # locked like the original


def test_missing_or_damaged_config_is_a_clear_error(tmp_path):
    with pytest.raises(WorkdirError, match="no config.json in .*elsewhere"):
        load_config(tmp_path / "elsewhere")
    (tmp_path / "config.json").write_text('{"seed": 0, "num_ep')
    with pytest.raises(WorkdirError, match=r"config.json is not valid JSON"):
        load_config(tmp_path)
