"""benchmarks/scaling.py: the growth exponent it fits, and a toy run that prints every stage with its exponent
and verdict."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from .script_loading import BENCHMARKS, load_script

SCALING = BENCHMARKS / "scaling.py"
VERDICT = r"(met|MISSED|too wide to judge)"


@pytest.fixture(scope="module")
def scaling():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its neighbours (verdicts.py, ...)
    try:
        yield load_script("scaling.py", "benchmark_scaling")
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize("sizes", [(1000, 2000, 4000), (25_000, 50_000, 100_000, 200_000), (3, 17, 101)])
def test_the_growth_exponent_is_numpys_least_squares_slope_on_logs(scaling, sizes):
    rng = np.random.default_rng(0)
    times = 0.02 * np.asarray(sizes, float) ** 1.3 * rng.uniform(0.8, 1.2, len(sizes))  # noisy, not exact
    expected = np.polyfit(np.log(sizes), np.log(times), 1)[0]
    assert scaling.growth_exponent(sizes, times) == pytest.approx(expected, rel=1e-12)


def test_an_exact_power_law_gives_its_power_and_the_fit_runs_from_the_middle_size(scaling):
    sizes = [65_536, 131_072, 262_144]
    assert scaling.growth_exponent(sizes, [2.5 * n for n in sizes]) == pytest.approx(1.0)
    assert scaling.growth_exponent(sizes, [1e-9 * n * n for n in sizes]) == pytest.approx(2.0)
    assert scaling.fitted(sizes) == [131_072, 262_144]
    assert scaling.fitted([1, 2, 3, 4, 5]) == [3, 4, 5]


def test_the_linear_target_is_the_time_ratio_over_the_size_ratio(scaling):
    stage = scaling.STAGES["probe"]
    result = scaling.StageResult(stage, [1, 2, 4], [1, 2, 4], runs=[
        {"cpu": [1.0], "wall": [1.0]},
        {"cpu": [2.0, 2.2], "wall": [2.0, 2.2]},
        {"cpu": [4.0, 5.5], "wall": [4.0, 5.5]},
    ])
    assert result.time_ratios() == pytest.approx([1.0, 1.25])
    verdicts = scaling.Verdicts()
    scaling.judge([result], verdicts)
    assert verdicts.judged[0].verdict == "met"


def test_a_toy_run_prints_every_stage_with_its_exponent_and_verdict(scaling, tmp_path):
    done = subprocess.run([sys.executable, str(SCALING), "--quick", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for name, stage in scaling.STAGES.items():
        assert stage.title in out
        assert re.search(rf"^  {VERDICT}\s+{re.escape(name)}: time ratio / size ratio, .*\(growth exponent "
                         r"-?\d+\.\d\d\)", out, re.MULTILINE), name
        if stage.holds is None:  # streaming: its memory judged flat
            assert re.search(rf"^  {VERDICT}\s+{re.escape(name)}: peak memory largest / middle", out,
                             re.MULTILINE), name
        else:  # holds everything: its peak printed, and said so
            assert re.search(rf"^  {re.escape(name)}\s+[\d,]+ .*: peak RSS [\d.]+ GiB, PSS [\d.]+ GiB, "
                             r"allocated \(anon\) [\d.]+ GiB .*holds", out, re.MULTILINE), name
    exponents = re.findall(r"\d\.\d\d  (-?\d+\.\d\d) \(wall -?\d+\.\d\d\)$", out, re.MULTILINE)
    assert len(exponents) == len(scaling.STAGES)


def test_a_stage_runs_in_a_fresh_process_and_reports_back(tmp_path):
    done = subprocess.run([sys.executable, str(SCALING), "--quick", "--only", "bootstrap", "--processes",
                           "fresh", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "a fresh process per stage and size" in done.stdout
    assert re.search(rf"^  {VERDICT}\s+bootstrap: time ratio", done.stdout, re.MULTILINE)


BAD_ARGUMENTS = [["--sizes", "probe=abc"], ["--sizes", "probe=0,5"], ["--sizes", "probe=200,100"],
                 ["--sizes", "probe=8192"], ["--repeats", "0"], ["--repeats", "1"]]


@pytest.mark.parametrize("argv", BAD_ARGUMENTS)
def test_bad_sizes_or_repeats_stop_with_what_was_expected(scaling, argv):
    with pytest.raises(SystemExit) as stopped:
        scaling.stage_sizes(scaling.parse(argv))
    assert stopped.value.code != 0
