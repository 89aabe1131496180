"""``medtransfer export``: a trained model as ONNX or TorchScript taking uint8 images, with its model card."""

from .model import DeployedModel, ExportError, load_trained_model

__all__ = ["DeployedModel", "ExportError", "load_trained_model"]
