"""benchmarks/cpu_precision.py on a toy network: every setting trains, ratios are to the round's baseline, and
the verdict follows the measured factor."""

from __future__ import annotations

import re

import pytest

from .script_loading import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("cpu_precision.py", "cpu_precision_benchmark")


def test_every_setting_trains_and_is_divided_by_the_same_rounds_baseline(bench, capsys, monkeypatch):
    steps = iter([2.0, 1.0, 8.0, 6.0,  # round 0, in SETTINGS order
                  8.0, 12.0, 2.0, 4.0])  # round 1, reversed: bf16 cl, bf16, 32 cl, 32
    monkeypatch.setattr(bench, "train_steps", lambda *args: next(steps))
    bench.main(["--repeats", "2"])
    rows = {tuple(line.split()[:2]): line for line in capsys.readouterr().out.splitlines()
            if re.match(r"(32-true|bf16-mixed) ", line)}
    assert rows[("32-true", "contiguous")].split()[3:5] == ["median", "1.00"]
    assert rows[("32-true", "channels_last")].split()[3:5] == ["median", "0.50"]  # 1/2 and 2/4
    assert rows[("bf16-mixed", "contiguous")].split()[3:5] == ["median", "3.50"]  # 8/2 and 12/4
    assert rows[("bf16-mixed", "channels_last")].split()[3:5] == ["median", "2.50"]  # 6/2 and 8/4


def test_the_verdict_compares_each_precisions_faster_layout(bench, capsys, monkeypatch):
    seconds = {("32-true", "contiguous"): 2.0, ("32-true", "channels_last"): 1.0,
               ("bf16-mixed", "contiguous"): 8.0, ("bf16-mixed", "channels_last"): 17.0}
    monkeypatch.setattr(bench, "train_steps", lambda args, *setting_and_data: seconds[setting_and_data[:2]])
    bench.main([])
    out = capsys.readouterr().out
    assert "takes 8.00x the time of 32-true (its faster layout): keep 32-true on this CPU" in out


def test_a_real_training_step_of_each_setting_runs(bench, capsys):
    bench.main(["--backbone", "test_resnet", "--stem", "imagenet", "--image_size", "32", "--batch_size", "4",
                "--steps", "1", "--warmup", "1"])
    out = capsys.readouterr().out
    assert len(re.findall(r"^(32-true|bf16-mixed) +(contiguous|channels_last) +\d+\.\d\d", out, re.M)) == 4
    assert re.search(r"bf16-mixed \(its faster layout\) takes \d+\.\d\dx the time of 32-true", out)


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--repeats", "0"], ["--warmup", "-1"]])
def test_counts_that_measure_nothing_are_a_usage_error(bench, capsys, argv):
    with pytest.raises(SystemExit) as ended:
        bench.main(argv)
    assert ended.value.code == 2
    assert "or more, got" in capsys.readouterr().err
