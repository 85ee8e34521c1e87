"""Known landscapes: results of neighbouring papers whose answers someone else proved (docs/theory.md §10 of the
paper notes), as ground truth for resland's finder and certificate. So far: Safran & Shamir (2018)."""

from .safran_shamir import certify_student, find_student_minimum, population_risk

__all__ = ["certify_student", "find_student_minimum", "population_risk"]
