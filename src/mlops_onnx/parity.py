"""Parity: do the ONNX variants give the native model's answers?

fp32 must match the native outputs to a tight tolerance and agree on every label, except where
the native output sits within that tolerance of the decision boundary (a probability within `tol`
of 0.5, two top logits within 2·`tol`): there rounding alone can flip the label, so such rows are
counted (`boundary_rows`) and do not fail parity; any other disagreement does. A quantized or fp16
variant must agree on almost every label and lose at most a little quality. A failing variant is
marked failed (and kept on disk for inspection); a failing fp32 blocks registration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ParityRules:
    fp32_max_abs_diff: float = 1e-4
    fp32_min_agreement: float = 1.0
    variant_min_agreement: float = 0.99
    variant_max_quality_drop: float = 0.01  # 1.0 point of accuracy/F1 or, if relative, 1 %
    quality_name: str = "accuracy"
    higher_is_better: bool = True
    relative_drop: bool = False


@dataclass
class VariantParity:
    variant: str
    passed: bool
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float | None
    quality: float
    quality_drop: float
    reasons: list[str]
    boundary_rows: int = 0  # label disagreements within the fp32 tolerance of the decision boundary

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def failed(cls, variant: str, reason: str) -> VariantParity:
        """A variant that could not even be compared (not built, or ONNX Runtime could not run it)."""
        inf = float("inf")
        return cls(variant, False, inf, inf, None, float("nan"), inf, [reason])


def quality_drop(native: float, candidate: float, rules: ParityRules) -> float:
    """How much worse the candidate is (positive = worse), absolute or relative to native."""
    worse = native - candidate if rules.higher_is_better else candidate - native
    if rules.relative_drop:
        return worse / abs(native) if native else float("inf") if worse > 0 else 0.0
    return worse


def compare(
    variant: str,
    native_outputs: np.ndarray,
    candidate_outputs: np.ndarray,
    native_labels: np.ndarray | None,
    candidate_labels: np.ndarray | None,
    native_quality: float,
    candidate_quality: float,
    rules: ParityRules,
    native_margin: np.ndarray | None = None,
) -> VariantParity:
    """`native_margin`: how far each native output is from changing its label (the spec's `decision_margin`)."""
    if native_outputs.shape != candidate_outputs.shape:
        return VariantParity.failed(
            variant, f"output shape {candidate_outputs.shape} differs from native {native_outputs.shape}"
        )
    diff = np.abs(native_outputs.astype(np.float64) - candidate_outputs.astype(np.float64))
    max_abs = float(np.nanmax(diff)) if diff.size else 0.0
    if not np.all(np.isfinite(candidate_outputs)):
        max_abs = float("inf")
    agreement, boundary = None, np.zeros(0, dtype=bool)
    if native_labels is not None and candidate_labels is not None:
        disagree = native_labels != candidate_labels
        agreement = float(np.mean(~disagree)) if disagree.size else 1.0
        if native_margin is not None:
            boundary = disagree & (np.asarray(native_margin) <= rules.fp32_max_abs_diff)
    drop = quality_drop(native_quality, candidate_quality, rules)
    reasons = []
    if variant == "fp32":
        if not max_abs <= rules.fp32_max_abs_diff:
            reasons.append(f"max abs diff {max_abs:.3g} > {rules.fp32_max_abs_diff:g}")
        if agreement is not None:
            # Flips at the boundary are rounding; every other disagreement counts.
            agreement_off_boundary = agreement + boundary.sum() / max(len(native_labels), 1)
            if agreement_off_boundary < rules.fp32_min_agreement:
                reasons.append(
                    f"label agreement {agreement:.4%} < {rules.fp32_min_agreement:.2%} "
                    f"({int(boundary.sum())} of the disagreements at the decision boundary)"
                )
    else:
        if agreement is not None and agreement < rules.variant_min_agreement:
            reasons.append(f"label agreement {agreement:.4%} < {rules.variant_min_agreement:.2%}")
        if not drop <= rules.variant_max_quality_drop:
            unit = "relative" if rules.relative_drop else "absolute"
            reasons.append(f"{rules.quality_name} drop {drop:.4f} ({unit}) > {rules.variant_max_quality_drop:g}")
    return VariantParity(
        variant=variant,
        passed=not reasons,
        max_abs_diff=max_abs,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        agreement=agreement,
        quality=float(candidate_quality),
        quality_drop=float(drop),
        reasons=reasons,
        boundary_rows=int(boundary.sum()),
    )


def passed_parity(metrics: dict) -> dict[str, bool]:
    """The pipeline's parity verdict per variant, from a run's `parity_<variant>_passed` metrics."""
    return {
        k.removeprefix("parity_").removesuffix("_passed"): bool(v)
        for k, v in metrics.items()
        if k.startswith("parity_") and k.endswith("_passed")
    }
