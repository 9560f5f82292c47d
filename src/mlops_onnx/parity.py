"""Parity: do the ONNX variants give the native model's answers?

fp32 must match the native outputs to a tight tolerance and agree on every label, except where
the native output sits within that tolerance of the decision boundary (a probability within `tol`
of 0.5, two top logits within 2·`tol`): there rounding alone can flip the label, so such rows are
counted (`boundary_rows`) and do not fail parity; any other disagreement does. A quantized or fp16
variant must agree on almost every label and lose at most a little quality. A failing variant is
marked failed (and kept on disk for inspection); a failing fp32 blocks registration.

On a large test split the comparison runs on a bounded, stratified, seeded sample of its rows
(`parity_sample`, MLOPS_PARITY_MAX_ROWS): the native model's pass over every row of a full-size split costs
minutes a night. The head-to-head with the champion still scores every test row.
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


def parity_sample(strata: np.ndarray | None, rows: int, max_rows: int | None, seed: int) -> np.ndarray:
    """Sorted indices of the test rows parity compares: all `rows` when `max_rows` is None, 0 or not
    smaller; otherwise exactly `max_rows` of them, a seeded random draw per stratum proportional to its
    size, with at least one row of every stratum unless there are more strata than `max_rows`.

    `strata` (one value per row: a class, a ticker) are known before any model runs; None: evenly spaced
    rows (the same every night, and spread over the whole split)."""
    if not max_rows or rows <= max_rows:
        return np.arange(rows)
    if strata is None:
        return np.linspace(0, rows - 1, max_rows).round().astype(np.int64)  # steps of at least 1: distinct
    _, stratum_of, sizes = np.unique(strata, return_inverse=True, return_counts=True)
    quotas = _proportional_quotas(sizes, max_rows)
    rng = np.random.default_rng(seed)
    picked = [
        rng.choice(np.flatnonzero(stratum_of == k), quota, replace=False) for k, quota in enumerate(quotas) if quota
    ]
    return np.sort(np.concatenate(picked))


def _proportional_quotas(sizes: np.ndarray, total: int) -> np.ndarray:
    """Rows to draw from each stratum: `total` split in proportion to `sizes` by largest remainder (each
    within one row of its exact share), at least one per stratum while there are no more strata than rows."""
    exact = sizes * total / sizes.sum()
    quotas = np.floor(exact).astype(np.int64)
    if len(sizes) <= total:
        quotas = np.maximum(quotas, 1)
    short = total - int(quotas.sum())
    if short > 0:
        quotas[np.argsort(quotas - exact, kind="stable")[:short]] += 1
    for _ in range(-short):  # the one-row minimum overshot: take back from the most over-served stratum
        quotas[np.argmax(np.where(quotas > 1, quotas - exact, -np.inf))] -= 1
    return quotas
