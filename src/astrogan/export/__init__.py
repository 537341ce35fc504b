"""Export: a trained generator -> ONNX or TorchScript + model.json, checked for parity against PyTorch."""

from astrogan.export.bundle import FORMATS, ExportResult, export_generator, export_module
from astrogan.export.parity import PARITY_TOLERANCE, ParityError, check_parity

__all__ = [
    "FORMATS",
    "PARITY_TOLERANCE",
    "ExportResult",
    "ParityError",
    "check_parity",
    "export_generator",
    "export_module",
]
