"""Scores of generated text with sacrebleu: corpus BLEU and chrF on detokenised output against the raw references.

sacrebleu's defaults are the WMT standard (13a tokenisation inside the metric, mixed case, exponential smoothing), so
every system is scored on the same terms whatever its own tokenisation; the signature that names those terms goes
into each result. Published "tokenised BLEU" numbers (multi-bleu.perl on the system's own tokens) are not the same
measure and usually come out higher.
"""

from __future__ import annotations


def bleu(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """(corpus BLEU in 0–100, sacrebleu signature) of one hypothesis per reference."""
    from sacrebleu.metrics import BLEU

    _check(hypotheses, references)
    metric = BLEU()
    return metric.corpus_score(hypotheses, [references]).score, str(metric.get_signature())


def chrf(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """(corpus chrF in 0–100, sacrebleu signature)."""
    from sacrebleu.metrics import CHRF

    _check(hypotheses, references)
    metric = CHRF()
    return metric.corpus_score(hypotheses, [references]).score, str(metric.get_signature())


def _check(hypotheses: list[str], references: list[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
