"""One flag style (underscores) for every tool verb; the old dashed spellings still work with a warning;
each tool verb's --help says which fit options it reads."""

from __future__ import annotations

import pytest

from medtransfer.cli import main
from medtransfer.utils.flags import underscore_flags
from medtransfer.verbs.benchmark import RENAMED as BENCHMARK_RENAMED
from medtransfer.verbs.benchmark import parser as benchmark_parser
from medtransfer.verbs.weights import RENAMED as WEIGHTS_RENAMED
from medtransfer.verbs.weights import build_parser as weights_parser

DASHED = ["--config", "g.yaml", "--dry-run", "--output-dir=out", "--devices-per-run", "2"]
UNDERSCORED = ["--config", "g.yaml", "--dry_run", "--output_dir=out", "--devices_per_run", "2"]


@pytest.mark.parametrize("argv", [DASHED, UNDERSCORED], ids=["dashed", "underscored"])
def test_benchmark_reads_both_spellings(argv, caplog):
    args = benchmark_parser().parse_args(underscore_flags(argv, BENCHMARK_RENAMED, "medtransfer benchmark"))
    assert args.dry_run and args.output_dir == "out" and args.devices_per_run == 2
    err = caplog.text
    if argv is DASHED:
        assert "--dry-run is deprecated, use --dry_run" in err and "--output-dir is deprecated" in err
    else:
        assert "deprecated" not in err


def test_weights_check_reads_both_spellings():
    for flag in ("--timm-kwarg", "--timm_kwarg"):
        argv = underscore_flags(["check", "resnet18", flag, "layers=[1, 1]"], WEIGHTS_RENAMED, "weights")
        assert weights_parser().parse_args(argv).timm_kwarg == ["layers=[1, 1]"]


def test_only_flags_are_rewritten_and_nothing_after_a_double_dash():
    argv = ["--only", "a--dry-run", "--dry-run", "--", "--dry-run"]
    rewritten = ["--only", "a--dry-run", "--dry_run", "--", "--dry-run"]
    assert underscore_flags(argv, ["--dry_run"], "p") == rewritten


def test_help_shows_the_underscore_spelling_only(capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    out = capsys.readouterr().out
    assert "--dry_run" in out and "--output_dir" in out and "--dry-run " not in out
    assert "takes no fit options itself" in out


@pytest.mark.parametrize(("verb", "says"), [
    ("extract", ["fit options it reads", "--config FILE", "--data.*", "--model.*", "--trainer.accelerator",
                 "--seed_everything"]),
    ("weights", ["Takes no fit options"]),
    ("prepare", ["--data.init_args", "The fit options it reads: --config (data pieces) and --data.*; no "
                 "--model.* or --trainer.*"]),
])
def test_each_tool_verbs_help_names_the_fit_options_it_reads(verb, says, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps help text
    for text in says:
        assert " ".join(text.split()) in out, text
