"""Measures computed from a model's outputs (samples, decoded text): Fréchet distance, Inception Score, Parzen
log-likelihood, BLEU and chrF. Used by the tasks; imports only core/.
"""
