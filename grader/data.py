"""The makemore names data set: find it, verify it, split it the way the lecture does.

``names.txt`` is looked for, in this order:

1. ``data/names.txt`` in this checkout (or in ``~/.cache/backprop-ninja`` when
   ``grader`` is installed from a wheel, outside a checkout);
2. the path in the environment variable ``BACKPROP_NINJA_NAMES``;
3. a download from the makemore repository into the place of (1).

Every file, found or downloaded, must have the known SHA-256. A bad download is
deleted, never left behind as ``data/names.txt``.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from .paths import NAMES_ENV_VAR as ENV_VAR

NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
NAMES_COUNT = 32033
BLOCK_SIZE = 3  # context length: how many characters do we take to predict the next one?
SPLIT_SEED = 42


class NamesDataError(RuntimeError):
    """names.txt is missing, damaged or could not be downloaded; the message says what to do."""


def default_data_dir() -> Path:
    """``data/`` of the checkout that holds this package, else a per-user cache."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "data").is_dir():
        return checkout / "data"
    return Path.home() / ".cache" / "backprop-ninja"


def _what_to_do(data_dir: Path) -> str:
    return (
        f"Fix: put a good copy at {data_dir / 'names.txt'} (download {NAMES_URL}), "
        f"or set {ENV_VAR}=/path/to/names.txt. Expected SHA-256 {NAMES_SHA256}."
    )


def verify(path: Path, data_dir: Path, origin: str) -> None:
    """Raise NamesDataError unless ``path`` is the exact makemore names.txt."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest == NAMES_SHA256:
        return
    count = len(data.decode("utf-8", errors="replace").splitlines())
    what = f"truncated ({count} of {NAMES_COUNT} names)" if count < NAMES_COUNT else "not the makemore names.txt"
    raise NamesDataError(f"{origin} {path} is {what}: its SHA-256 is {digest}. {_what_to_do(data_dir)}")


def _download(url: str, target: Path, data_dir: Path, timeout: float) -> None:
    """Download to a temporary file beside ``target``, verify it, then move it into place."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".names-", suffix=".part", dir=data_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            out.write(response.read())
        verify(tmp, data_dir, origin=f"the download from {url}, saved as")
        os.replace(tmp, target)
    except NamesDataError:
        raise
    except OSError as exc:  # URLError, timeouts, refused connections, disk errors
        raise NamesDataError(
            f"names.txt is not at {target}, {ENV_VAR} is not set, and the download from {url} "
            f"failed ({exc}). {_what_to_do(data_dir)}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def names_path(
    data_dir: Path | None = None,
    environ: dict | None = None,
    url: str = NAMES_URL,
    timeout: float = 30.0,
) -> Path:
    """Return the path of a verified names.txt, downloading it if there is none."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    environ = os.environ if environ is None else environ
    local = data_dir / "names.txt"
    if local.is_file():
        verify(local, data_dir, origin="the data file")
        return local
    if environ.get(ENV_VAR):
        path = Path(environ[ENV_VAR]).expanduser()
        if not path.is_file():
            raise NamesDataError(f"{ENV_VAR}={environ[ENV_VAR]} is not a file. {_what_to_do(data_dir)}")
        verify(path, data_dir, origin=f"{ENV_VAR}")
        return path
    _download(url, local, data_dir, timeout)
    return local


@lru_cache(maxsize=1)
def load_words() -> tuple[str, ...]:
    """The 32,033 names, in file order (a tuple, so no caller can change them for another)."""
    return tuple(names_path().read_text(encoding="utf-8").splitlines())


@dataclass(frozen=True)
class Dataset:
    """The lecture's data: vocabulary and the 80/10/10 split of (context, next char) examples."""

    words: tuple[str, ...]
    itos: dict[int, str]
    stoi: dict[str, int]
    block_size: int
    Xtr: torch.Tensor
    Ytr: torch.Tensor
    Xdev: torch.Tensor
    Ydev: torch.Tensor
    Xte: torch.Tensor
    Yte: torch.Tensor

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return (
            f"Dataset({len(self.words)} names, vocab_size={self.vocab_size}, block_size={self.block_size}, "
            f"train {len(self.Xtr)} / dev {len(self.Xdev)} / test {len(self.Xte)} examples)"
        )


def build_dataset(words, stoi: dict[str, int], block_size: int = BLOCK_SIZE):
    """Every character of every word (and the closing '.') as a (context, target) pair."""
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]  # crop and append
    return torch.tensor(X), torch.tensor(Y)


def load_dataset(block_size: int = BLOCK_SIZE) -> Dataset:
    """Build the lecture's split: random.seed(42) shuffle, 80% train, 10% dev, 10% test.

    Every call builds fresh tensors, so changing them in a notebook changes nothing else.
    """
    words = list(load_words())
    chars = sorted(set("".join(words)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0
    itos = {i: s for s, i in stoi.items()}
    random.Random(SPLIT_SEED).shuffle(words)  # the same order as random.seed(42); random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    Xtr, Ytr = build_dataset(words[:n1], stoi, block_size)
    Xdev, Ydev = build_dataset(words[n1:n2], stoi, block_size)
    Xte, Yte = build_dataset(words[n2:], stoi, block_size)
    return Dataset(load_words(), itos, stoi, block_size, Xtr, Ytr, Xdev, Ydev, Xte, Yte)
