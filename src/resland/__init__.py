"""resland: find, measure and certify critical points of deep ResNets.

Checks, on real networks and data, the question of Yun, Sra & Jadbabaie (NeurIPS 2019):
is every critical point of a deep ResNet's risk at least as good as the best linear
predictor, or else a strict saddle? Conventions: mean risk, squared loss ``(p − y)²``
without 1/2, float64 throughout.
"""

from ._checks import ValidationError
from .certificate import VERDICTS, Certificate, certify, certify_ensemble
from .critical import OUTCOMES, CriticalPoint, find_critical_point, find_critical_points
from .outcomes import log_progress, reporting
from .checkpoint import load_parameters
from .curvature import EigResult, HessianOperator, hessian_extremes, lanczos
from .embedding import embed
from .ensemble import Ensemble
from .data import Dataset, load_dataset
from .functional import FlatRisk, ModelConversionWarning, flat_parameters
from .linear import LinearFit, NotAttainedWarning, best_linear
from .losses import CrossEntropyLoss, LogisticLoss, Loss, PseudoHuberLoss, SquaredLoss, get_loss
from .models import FCNet, LinearModel, ResNet, build_model, init_model
from .points import point_id, same_point
from . import theory

__version__ = "0.1.0"

__all__ = [
    # errors
    "ValidationError",
    # losses
    "Loss", "SquaredLoss", "LogisticLoss", "PseudoHuberLoss", "CrossEntropyLoss", "get_loss",
    # models
    "ResNet", "FCNet", "LinearModel", "build_model", "init_model", "flat_parameters", "ModelConversionWarning",
    # data
    "Dataset", "load_dataset",
    # linear baseline
    "best_linear", "LinearFit", "NotAttainedWarning",
    # curvature
    "FlatRisk", "HessianOperator", "hessian_extremes", "lanczos", "EigResult",
    # critical points, and embedding a small net's into a deeper or wider one
    "find_critical_point", "CriticalPoint", "embed", "OUTCOMES", "reporting", "log_progress",
    # distinct points (docs/theory.md §9, §12)
    "point_id", "same_point",
    # ensembles (batched over seeds)
    "Ensemble", "find_critical_points", "certify_ensemble",
    # checkpoints
    "load_parameters",
    # theory and certificate
    "theory", "certify", "Certificate", "VERDICTS",
]
