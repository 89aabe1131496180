"""No patient in two splits (docs/datasets.md, "Patients"): a model tested on a patient whose other images it
was trained on scores that patient's look, not the finding, and the test score goes up with the leak.

Carved splits and label fractions are patient-grouped, so they never leak. Splits the user made (a CSV's
split column, an ImageFolder's split folders) can, and are refused, naming the patients; a published
dataset's official splits are what its papers report on, and are kept with a warning."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from ..task import SPLITS
from .errors import PatientLeakError
from .fractions import patient_keys
from .images import Source
from .leaks import named, refuse_or_warn

log = logging.getLogger(__name__)


def check_patients_in_one_split(dataset: str, sources: Mapping[str, Source], declared_by: str | None,
                                fix: str) -> None:
    """Raise ``PatientLeakError`` when a patient's images are in more than one split (``declared_by`` None:
    splits the user made; ``fix`` says what to do), or warn naming who declared the splits."""
    splits_of: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        groups = getattr(sources[split], "groups", None)
        if groups is None:
            continue
        patients, counts = np.unique(patient_keys(groups), return_counts=True)
        for patient, count in zip(patients.tolist(), counts.tolist(), strict=True):
            splits_of.setdefault(patient, {})[split] = count
    shared = {patient: found for patient, found in splits_of.items() if len(found) > 1}
    if not shared:
        return
    patients = named([f"{patient!r} ({', '.join(f'{s} {n}' for s, n in found.items())})"
                      for patient, found in shared.items()])
    problem = (f"{len(shared)} patient(s) have images in more than one split: {patients}; a model tested "
               "on a patient it was trained on scores higher than on a new one (leakage)")
    refuse_or_warn(log, dataset, problem, declared_by, PatientLeakError, fix)
