"""medtransfer: which pretrained backbone, and which way of transferring it, works best on medical images."""

__version__ = "0.1.0"
