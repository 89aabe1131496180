"""Explanation maps: Grad-CAM for CNNs and class-token attention for ViTs (docs/explanations.md)."""

from .callbacks import ExplanationMaps, PredictionExplanations, add_explanations
from .explainer import BackboneMaps, ExplainedBatch, Explainer
from .targets import ExplanationError, choose_target

__all__ = ["BackboneMaps", "ExplainedBatch", "Explainer", "ExplanationError", "ExplanationMaps",
           "PredictionExplanations", "add_explanations", "choose_target"]
