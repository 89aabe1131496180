"""What a run does besides training and scoring.

Test after fit, the confidence intervals of results.json, the rule of the decision thresholds it records,
evaluating untrained weights on purpose, explanation maps. The command takes them as options
(``--test_after_fit``, ``--intervals.*``, ``--decision_rule``, ``--allow_untrained``, ``--explain``); Python
passes a ``RunOptions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigValueError
from ..outputs.thresholds import THRESHOLD_RULES


@dataclass(frozen=True)
class Intervals:
    """The bootstrap confidence intervals of results.json's test metrics (``resamples`` 0: none)."""

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resamples < 0:
            raise ConfigValueError(f"intervals.resamples={self.resamples}: expected 0 (no intervals) or more "
                                   "bootstrap resamples (1000 is the default)")
        if not 0 < self.confidence < 1:
            raise ConfigValueError(f"intervals.confidence={self.confidence}: expected a level between 0 and "
                                   "1, e.g. 0.95")


@dataclass(frozen=True)
class RunOptions:
    """What a run does besides training and scoring (the command's ``--test_after_fit``, ``--explain``, ...).

    Attributes:
        test_after_fit: ``fit`` ends by validating and testing its best checkpoint.
        intervals: see ``Intervals``.
        allow_untrained: ``validate``/``test``/``predict`` may run a model with trainable weights and no
            checkpoint.
        explain: explanation maps (docs/explanations.md).
        decision_rule: how a test of a binary or multilabel task chooses each class's decision threshold on
            the validation split, for results.json's ``extra.decision`` (``medtransfer.run.decision``):
            ``youden`` (default: it maximises balanced accuracy, the thresholded metric the grid's report
            shows) or ``f1``.
    """

    test_after_fit: bool = True
    intervals: Intervals = field(default_factory=Intervals)
    allow_untrained: bool = False
    explain: bool = False
    decision_rule: str = "youden"

    def __post_init__(self) -> None:
        if self.decision_rule not in THRESHOLD_RULES:
            raise ConfigValueError(f"decision_rule={self.decision_rule!r}: expected one of "
                                   f"{list(THRESHOLD_RULES)}")

    @staticmethod
    def add_arguments(parser) -> None:
        """The options as the command spells them, with ``RunOptions``' defaults."""
        defaults, intervals = RunOptions(), Intervals()
        parser.add_argument("--test_after_fit", type=bool, default=defaults.test_after_fit,
                            help="fit: validate and test the best checkpoint when training ends")
        parser.add_argument("--intervals.resamples", type=int, default=intervals.resamples,
                            help="test: bootstrap resamples of results.json's confidence intervals (0: none)")
        parser.add_argument("--intervals.confidence", type=float, default=intervals.confidence,
                            help="test: confidence level of those intervals")
        parser.add_argument("--intervals.seed", type=int, default=intervals.seed,
                            help="test: seed of the bootstrap resamples")
        parser.add_argument("--decision_rule", type=str, default=defaults.decision_rule,
                            help="fit/test of a binary or multilabel task: the rule choosing each class's "
                                 f"decision threshold on the validation split, one of {list(THRESHOLD_RULES)}"
                                 " (results.json's extra.decision)")
        parser.add_argument("--allow_untrained", type=bool, default=defaults.allow_untrained,
                            help="validate/test/predict: run a model with trainable weights without "
                                 "--ckpt_path")
        parser.add_argument("--explain", type=bool, nargs="?", const=True, default=defaults.explain,
                            help="fit/test: explanation maps of the first test images of each class; "
                                 "predict: a map per image, in predictions.csv's explanation column "
                                 "(docs/explanations.md)")

    @classmethod
    def from_config(cls, config) -> RunOptions:
        """The options of a parsed config (``run.config.ParsedRun``)."""
        intervals = config.get("intervals") or {}
        return cls(
            test_after_fit=bool(config.get("test_after_fit", True)),
            intervals=Intervals(int(intervals.get("resamples", 1000)),
                                float(intervals.get("confidence", 0.95)), int(intervals.get("seed", 0))),
            decision_rule=str(config.get("decision_rule", "youden")),
            allow_untrained=bool(config.get("allow_untrained", False)),
            explain=bool(config.get("explain", False)),
        )
