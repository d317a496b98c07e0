"""The localisation options of ``predict`` and ``demo`` reach the method's configuration.

Each option is given a value other than its default; the configuration the command hands
on must carry exactly those values (and the report's values for everything else).
"""

from __future__ import annotations

import pytest

from audiomoment.cli import main
from audiomoment.config import LocalizeConfig

OPTIONS = ["--tol", "1e-05", "--n-init", "3", "--max-windows", "2", "--engine", "reference"]
EXPECTED = LocalizeConfig(tol=1e-5, n_init=3, max_windows=2, engine="reference")


class Captured(Exception):
    """Raised by the stand-ins once they have seen the configuration."""


def test_predict_hands_every_option_to_the_configuration(tiny_dataset, tmp_path, monkeypatch):
    import audiomoment.pipelines.dataset as dataset

    seen = []

    def stand_in(*args, config, **kwargs):
        seen.append(config)
        raise Captured

    monkeypatch.setattr(dataset, "predict_dataset", stand_in)
    with pytest.raises(Captured):
        main(["predict", "--annotations", str(tiny_dataset["annotations"]),
              "--features", str(tiny_dataset["features"]), "--system", "2", "--no-cache",
              "--out", str(tmp_path / "p.jsonl"), *OPTIONS])
    assert seen == [EXPECTED]


def test_predict_defaults_are_the_reports(tiny_dataset, tmp_path, monkeypatch):
    import audiomoment.pipelines.dataset as dataset

    seen = []

    def stand_in(*args, config, **kwargs):
        seen.append(config)
        raise Captured

    monkeypatch.setattr(dataset, "predict_dataset", stand_in)
    with pytest.raises(Captured):
        main(["predict", "--annotations", str(tiny_dataset["annotations"]),
              "--features", str(tiny_dataset["features"]), "--system", "2", "--no-cache",
              "--out", str(tmp_path / "p.jsonl")])
    assert seen == [LocalizeConfig()]
    assert (seen[0].tol, seen[0].n_init, seen[0].max_windows) == (1e-3, 5, 10)


def test_demo_hands_every_option_to_the_configuration(tmp_path, monkeypatch):
    import audiomoment.pipelines.demo as demo

    seen = []

    def stand_in(*args, config, **kwargs):
        seen.append(config)
        raise Captured

    monkeypatch.setattr(demo, "run_demo", stand_in)
    with pytest.raises(Captured):
        main(["demo", "--out", str(tmp_path / "demo"), *OPTIONS])
    assert seen == [EXPECTED]


def test_a_bad_option_value_is_one_line(tiny_dataset, tmp_path, capsys):
    code = main(["predict", "--annotations", str(tiny_dataset["annotations"]),
                 "--features", str(tiny_dataset["features"]), "--system", "2", "--no-cache",
                 "--out", str(tmp_path / "p.jsonl"), "--tol", "0"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == "audiomoment: error: tol must be > 0, got 0.0"
