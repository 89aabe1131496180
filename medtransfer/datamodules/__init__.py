"""LightningDataModules: one per dataset, all producing docs/architecture.md batches."""

from .base import MedicalDataModule
from .chestxray14 import ChestXray14
from .csv_dataset import CSVDataset
from .file_backed import FileBackedDataModule
from .folder import ImageFolder
from .medmnist import MedMNIST
from .pcam import PCam
from .pneumonia import ChestXrayPneumonia
from .retinopathy import APTOS2019, EyePACS
from .synthetic import SyntheticMedical
from .unlabelled import UnlabelledImages
from .unlabelled_predict import NewImages

__all__ = [
    "APTOS2019",
    "CSVDataset",
    "ChestXray14",
    "ChestXrayPneumonia",
    "EyePACS",
    "FileBackedDataModule",
    "ImageFolder",
    "MedMNIST",
    "MedicalDataModule",
    "NewImages",
    "PCam",
    "SyntheticMedical",
    "UnlabelledImages",
]
