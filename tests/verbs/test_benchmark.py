"""``medtransfer benchmark`` on the command line: --dry_run plans without side effects, and a bad axis value
fails before any run starts, naming the axis and the value."""

from __future__ import annotations

import pytest

from medtransfer.grid.plan import expand
from medtransfer.grid.resolve import InvalidRunError, resolve
from medtransfer.grid.spec import load_grid
from medtransfer.verbs.benchmark import main
from tests.grid.bench_helpers import REPO, small_grid


def test_dry_run_lists_the_plan_and_writes_nothing(write_grid, tmp_path, capsys):
    assert main(["--config", str(write_grid(small_grid())), "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "grid small" in out and "8 runs" in out and "finished: 0, to run: 8" in out
    assert out.count("  todo  synthetic-linear-") == 8
    assert "first command: medtransfer fit --config" in out
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "axis, values, named",
    [
        ("model.init_args.lr", [0.001, "fast"], "axis model.init_args.lr = 'fast'"),
        ("model.init_args.learning_rate", [0.1], "axis model.init_args.learning_rate = '0.1'"),
        ("data.init_args.kind", ["binary", "tabular"], "axis data.init_args.kind = 'tabular'"),
    ],
)
def test_invalid_axis_value_is_named_before_any_run(write_grid, resolver, tmp_path, axis, values, named):
    grid = small_grid()
    grid["axes"][axis] = values
    spec = load_grid(write_grid(grid))
    with pytest.raises(InvalidRunError) as err:
        resolve(expand(spec), tmp_path / "features", resolver)
    assert named in str(err.value)


def test_cli_reports_an_invalid_axis_value(write_grid, tmp_path, capsys):
    grid = small_grid()
    grid["axes"]["trainer.max_epochs"] = [1, "many"]
    assert main(["--config", str(write_grid(grid)), "--dry_run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # jsonargparse's nested alternatives worded in one line
    assert err[0].endswith("axis trainer.max_epochs = 'many' (trainer.max_epochs='many') is not a valid "
                           "`medtransfer fit` config: trainer.max_epochs: expected an int (or null), got "
                           "'many'")
    assert not (tmp_path / "out").exists()


def test_report_needs_a_folder(tmp_path, capsys):
    assert main(["--report", str(tmp_path / "missing")]) == 2
    assert "is not a folder of results" in capsys.readouterr().err
    assert main([]) == 2


def test_paper_grid_dry_run_lists_its_runs(resolver, tmp_path):
    pieces = [REPO / "configs" / "trainer" / "gpu.yaml", REPO / "configs" / "model" / "finetune.yaml"]
    missing = [str(p.relative_to(REPO)) for p in pieces if not p.is_file()]
    if missing:  # the foundation's config pieces, which the paper grid composes
        pytest.skip(f"paper grid needs {missing}, not in this checkout yet")
    spec = load_grid(REPO / "configs" / "benchmark" / "paper.yaml", cwd=REPO)
    runs = expand(spec)
    # 4 datasets x (4 backbones x 2 protocols + DVME x 2 protocols) x 3 fractions x 3 seeds
    assert len(runs) == 4 * 10 * 3 * 3
    labels = {axis: sorted({r.labels[axis] for r in runs}) for axis in ("dataset", "protocol", "backbone")}
    assert labels == {
        "dataset": ["aptos2019", "chestxray14", "pcam", "pneumonia"],
        "protocol": ["finetune", "linear"],
        "backbone": ["dino", "dvme", "simclr", "supervised", "swav"],
    }
    # every distinct (dataset, protocol, backbone) config parses with the real CLI parser
    sample = list(
        {(r.labels["dataset"], r.labels["protocol"], r.labels["backbone"]): r for r in runs}.values()
    )
    resolve(sample, tmp_path / "features", resolver)
    assert len({r.fingerprint for r in sample}) == len(sample) == 40
