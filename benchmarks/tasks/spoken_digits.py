"""The Free Spoken Digit Dataset (Jakobovski et al.), release v1.0.10: 3,000 mono 16-bit WAVs at 8 kHz, 6 speakers ×
10 digits × 50 takes, named ``{digit}_{speaker}_{take}.wav`` (CC BY-SA 4.0).

The release is pinned by its files: ``manifests/fsdd-v1.0.10.csv.gz`` lists every recording with its sha256 (split,
path, label = the digit, sha256; the same gzip'd CSV as the image manifests), and every file is checked against it
before it is read. Users without the files download the release's archive once (``download_release``); its
recordings are checked against the same list, so a moved tag or a changed file is an error, never a silent change.

Reading is strict: a file that is not a 16-bit mono 8 kHz PCM WAV, or holds fewer samples than its header declares
(truncated), is a ``DataError`` naming the file and what is wrong, and so is a speaker with no recordings.

μ-law companding (ITU-T G.711 form, μ = 255, van den Oord et al. 2016 §2.2) maps a sample in [-1, 1] to one of 256
classes: ``f(x) = sign(x) ln(1 + μ|x|) / ln(1 + μ)``, quantised to 8 bits.
"""

from __future__ import annotations

import io
import math
import tarfile
import urllib.request
import wave
from pathlib import Path

import numpy as np
import torch

from benchmarks.core.checksums import sha256_file
from benchmarks.tasks.files import DataError
from benchmarks.tasks.manifest import ImageRecord, read_manifest, write_manifest

RELEASE = "v1.0.10"
ARCHIVE_URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/{RELEASE}.tar.gz"
FOLDER = "fsdd"  # <data>/fsdd/recordings/*.wav
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
DIGITS = 10
TAKES = 50
TEST_TAKES = range(0, 5)  # the dataset's own split: takes 0–4 are its test set
SAMPLE_RATE = 8000
MU = 255
# the spoken-digit judge that listens to generated clips (heard_digits.py): its file under benchmarks/featurenets/ and
# sha256 (m5 seed 0, made by `milestones feature-net fsdd-digits`, test error 3.67 %)
JUDGE = ("fsdd-digits-m5.pt", "c062bfc2bfaee7a9a5973dd1217278f367122765b502742232aed458e31e0eef")
MANIFEST = Path(__file__).parent / "manifests" / f"fsdd-{RELEASE}.csv.gz"


# --- reading --------------------------------------------------------------------------------------------------------
def read_wav(path: Path) -> np.ndarray:
    """The samples of a 16-bit mono PCM WAV at 8 kHz as float32 in [-1, 1); anything else is a one-line DataError."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (wave.Error, EOFError) as error:
        raise DataError(f"{path}: not a PCM WAV file ({error})") from None
    if rate != SAMPLE_RATE:
        raise DataError(f"{path}: sample rate {rate} Hz, the task reads {SAMPLE_RATE} Hz recordings (resample it)")
    if channels != 1:
        raise DataError(f"{path}: {channels} channels, the task reads mono recordings")
    if width != 2:
        raise DataError(f"{path}: {8 * width}-bit samples, the task reads 16-bit PCM")
    if len(raw) != frames * width:
        raise DataError(f"{path}: truncated: the header declares {frames} samples, the file holds {len(raw) // 2}")
    if frames == 0:
        raise DataError(f"{path}: no samples")
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """Float samples in [-1, 1] as a 16-bit mono PCM WAV (generated clips, test fixtures)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(samples, -1, 32767 / 32768) * 32768).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def parse_name(name: str) -> tuple[int, str, int]:
    """``"3_theo_17.wav"`` → (3, "theo", 17); a name of another form is a DataError."""
    parts = Path(name).stem.split("_")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit() or Path(name).suffix != ".wav":
        raise DataError(f"{name}: not a recording name of the form <digit>_<speaker>_<take>.wav")
    return int(parts[0]), parts[1], int(parts[2])


def split_of(take: int) -> str:
    return "test" if take in TEST_TAKES else "train"


def records(root: Path, manifest: Path = MANIFEST, speakers: tuple[str, ...] = SPEAKERS) -> list[ImageRecord]:
    """The manifest's recordings, each present under ``root`` with its sha256; a speaker with no recordings there, or a
    missing or altered file, is a DataError naming it."""
    listed = read_manifest(manifest)
    present = {p.name for p in (Path(root) / "recordings").glob("*.wav")}
    for speaker in speakers:
        if not any(parse_name(name)[1] == speaker for name in present):
            raise DataError(f"{Path(root) / 'recordings'}: no recordings of speaker '{speaker}' "
                            f"(expected <digit>_{speaker}_<take>.wav; the release {RELEASE} has 500)")  # fmt: skip
    for record in listed:
        path = Path(root) / record.path
        if not path.is_file():
            missing = sum(not (Path(root) / r.path).is_file() for r in listed)
            raise DataError(f"{path}: missing ({missing} of {len(listed)} listed recordings are missing)")
        actual = sha256_file(path)
        if actual != record.sha256:
            raise DataError(f"{path}: sha256 {actual[:16]}…, the release {RELEASE} lists {record.sha256[:16]}…: "
                            f"{what_is_wrong(path)}; restore the release's file")  # fmt: skip
    return listed


def what_is_wrong(path: Path) -> str:
    """Why a recording differs from the release's, as far as reading it tells (another rate, truncated, not a WAV)."""
    try:
        read_wav(path)
    except DataError as error:
        return str(error).removeprefix(f"{path}: ")
    return "altered (it reads as a valid 8 kHz mono WAV, with other samples)"


def manifest_records(root: Path) -> list[ImageRecord]:
    """Every ``recordings/*.wav`` under ``root`` as a manifest record (how the committed manifest was made)."""
    found = []
    for path in sorted((Path(root) / "recordings").glob("*.wav")):
        digit, _, take = parse_name(path.name)
        found.append(ImageRecord(split_of(take), f"recordings/{path.name}", str(digit), sha256_file(path)))
    return found


def write_release_manifest(root: Path, path: Path = MANIFEST) -> str:
    """Rebuild the committed manifest from a copy of the release; returns its sha256."""
    return write_manifest(manifest_records(root), path)


def download_release(root: Path, url: str = ARCHIVE_URL) -> None:
    """Fetch the release's archive and extract its ``recordings/`` into ``root`` (checked afterwards by ``records``)."""
    print(f"downloading {url} -> {root / 'recordings'}", flush=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            archive = response.read()
    except OSError as error:
        raise DataError(f"{root / 'recordings'}: missing, and {url} could not be downloaded ({error}); with no "
                        f"network, put the release's recordings there or point --data-dir / MILESTONES_DATA at a "
                        f"folder that holds {FOLDER}/recordings/") from None  # fmt: skip
    target = Path(root) / "recordings"
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 2 and parts[-2] == "recordings" and member.name.endswith(".wav"):
                (target / parts[-1]).write_bytes(tar.extractfile(member).read())


# --- μ-law ----------------------------------------------------------------------------------------------------------
def mu_law_encode(x: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """Samples in [-1, 1] → class ids in 0 … mu (int64)."""
    x = x.clamp(-1, 1)
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)  # [-1, 1]
    return ((y + 1) / 2 * mu + 0.5).floor().long().clamp(0, mu)


def mu_law_decode(ids: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """Class ids in 0 … mu → samples in [-1, 1] (the centre of each class's interval)."""
    y = ids.float() / mu * 2 - 1
    return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu


# --- the judge's window -----------------------------------------------------------------------------------------------
WINDOW = 8000  # samples: 1 s at 8 kHz


def quantise(waveforms: torch.Tensor) -> torch.Tensor:
    """Float samples in [-1, 1] → the same through μ-law's 256 levels (encode, then decode to the level's centre).
    Idempotent: a generated clip, already decoded from μ-law ids, comes back unchanged."""
    return mu_law_decode(mu_law_encode(waveforms))


def to_window(waveform: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """(T,) float samples → (window,): at the start, zero-padded after, or the first ``window`` samples."""
    out = torch.zeros(window, dtype=torch.float32)
    n = min(len(waveform), window)
    out[:n] = waveform[:n].float()
    return out


def windows(waveforms: list[torch.Tensor], window: int = WINDOW) -> torch.Tensor:
    """Clips of any lengths → (N, 1, window) float32, each μ-law quantised and placed as ``to_window`` does."""
    if not waveforms:
        return torch.zeros(0, 1, window)
    return torch.stack([to_window(quantise(w.float()), window) for w in waveforms]).unsqueeze(1)
