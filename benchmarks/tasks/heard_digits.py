"""How often a generated spoken digit is heard as the digit it was asked for.

The judge is the suite's own spoken-digit classifier: the ``m5`` entry (Dai et al. 2017's M5 on raw waveforms)
trained on the ``fsdd-digits`` task by ``milestones feature-net fsdd-digits`` (seed 0, CPU), committed as
``benchmarks/featurenets/fsdd-digits-m5.pt`` with a JSON file saying how it was made. Its sha256 is pinned here
(``CLASSIFIER``) and checked every time it is loaded: a missing or altered file is an error, never a silent retrain,
and a result that reports these numbers should record the checksum.

Clips are heard as the classifier was trained: μ-law quantised (a clip decoded from μ-law ids is unchanged) and placed
at the start of an 8,000-sample window (1 s at 8 kHz), zero-padded, longer clips cut (``spoken_digits.windows``).
``heard_as_real`` scores real recordings the same way: the ceiling a generator's clips can be compared with (on the
test takes it is 100 − the classifier's test error).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

from benchmarks.scoring.sample_metrics import FEATURE_NET_DIR, FeatureNet, load_feature_net
from benchmarks.tasks.spoken_digits import JUDGE, WINDOW, windows

CLASSIFIER = JUDGE  # (file under benchmarks/featurenets/, its sha256), pinned where the fsdd task records it
DIGITS = 10


@cache
def _committed(filename: str, sha256: str, folder: Path) -> FeatureNet:
    return load_feature_net(filename, sha256, folder)


def spoken_digit_classifier(folder: Path = FEATURE_NET_DIR) -> FeatureNet:
    """The committed classifier, its sha256 checked (``FeatureNetError`` when missing or altered); loaded once."""
    return _committed(*CLASSIFIER, Path(folder))


def heard_as(clips: torch.Tensor, digits: torch.Tensor, net: FeatureNet | None = None) -> dict:
    """``clips`` (N, T) float waveforms in [-1, 1] at 8 kHz, ``digits`` (N,) the digit each should say →
    ``heard_as_digit``: % of the clips the classifier hears as their digit; ``heard_confusion``: 10×10 counts
    (row: the digit asked for, column: the digit heard), as nested lists; ``heard_digits``: what each clip is heard
    as; ``heard_n``: N."""
    if clips.dim() != 2 or digits.shape != (len(clips),):
        raise ValueError(f"heard_as: clips (N, T) and digits (N,), got {tuple(clips.shape)} and {tuple(digits.shape)}")
    return heard_clips(list(clips.detach().cpu()), digits, net)


@torch.no_grad()
def heard_clips(clips: list[torch.Tensor], digits: torch.Tensor, net: FeatureNet | None = None,
                batch_size: int = 100) -> dict:  # fmt: skip
    """``heard_as`` for clips of different lengths, each (T_i,), windowed one by one."""
    net = net if net is not None else spoken_digit_classifier()
    device = next(net.parameters()).device
    heard = []
    for start in range(0, len(clips), batch_size):
        x = windows(clips[start : start + batch_size], WINDOW).to(device)  # (b, 1, 8000), μ-law, zero-padded or cut
        heard.append(net.logits(x).argmax(1).cpu())
    heard = torch.cat(heard) if heard else torch.zeros(0, dtype=torch.long)
    digits = torch.as_tensor(digits).detach().cpu().long()
    confusion = torch.zeros(DIGITS, DIGITS, dtype=torch.long)
    confusion.index_put_((digits, heard), torch.ones_like(digits), accumulate=True)
    correct = float((heard == digits).float().mean() * 100) if len(digits) else float("nan")
    return {"heard_as_digit": correct, "heard_confusion": confusion.tolist(), "heard_digits": heard.tolist(),
            "heard_n": len(digits)}  # fmt: skip


def heard_as_real(datamodule, split: str = "test", net: FeatureNet | None = None) -> dict:
    """``heard_as`` on a set-up FSDD data module's real recordings of ``split`` (``SpokenDigitData.clips``, μ-law
    ids): the ceiling for generated clips. The keys are prefixed ``real_`` so both fit one result."""
    from benchmarks.tasks.spoken_digits import mu_law_decode

    clips = datamodule.clips[split]
    waveforms = [mu_law_decode(c.ids.long()) for c in clips]
    scores = heard_clips(waveforms, torch.tensor([c.digit for c in clips]), net)
    return {f"real_{key}": value for key, value in scores.items()}
