"""LightningDataModules: one per dataset, all producing DESIGN.md batches."""

from .base import MedicalDataModule
from .synthetic import SyntheticMedical

__all__ = ["MedicalDataModule", "SyntheticMedical"]
