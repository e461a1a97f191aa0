"""The Multimodal3DIdent folder layout: writing it (our generator) and loading it (ours or the
real dataset).

Layout of a root folder::

    vocab.json                      the vocabulary of train/text/text_raw.txt (the official
                                    loader's {"w2i", "i2w"})
    train/ val/ test/
        images/000000.png ...       RGB, zero-padded index of width max(1, ceil(log10(n)))
        text/text_raw.txt           line i is the caption of image i
        latents_image.csv           one row per image, header = factors.IMAGE_COLUMNS
        latents_text.csv            one row per caption, header = factors.TEXT_COLUMNS

:func:`generate` writes each split into a hidden temporary folder next to it and renames it into
place once complete, so an interrupted run leaves no half-written split. :func:`load_split`
reads a split into memory once: images as a ``uint8`` array, captions as token ids, latents as
columns; training then draws batches from device-resident arrays (no per-batch file access).
Captions are tokenised and the vocabulary is built as the official loader does
(:mod:`~jaxmmcl.imgtxt.text`): the vocabulary always from the training split's text.
"""

from __future__ import annotations

import csv
import math
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from jaxmmcl.config import ConfigError
from jaxmmcl.imgtxt.factors import (
    IMAGE_COLUMNS,
    TEXT_COLUMNS,
    image_latents,
    sample_factors,
    take,
)
from jaxmmcl.imgtxt.factors import text_latents as text_latent_columns
from jaxmmcl.imgtxt.render import render_batch, to_uint8
from jaxmmcl.imgtxt.text import VOCAB_FILE, Vocabulary, captions, sentences, tokenize

SPLITS = ("train", "val", "test")
MIN_IMAGE_SIZE = 16


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected an integer >= 1, got {value!r}")


def check_image_size(value) -> None:
    """Raises :class:`ConfigError` unless ``value`` is an integer >= 16."""
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_IMAGE_SIZE:
        raise ConfigError(f"--size: expected an integer >= {MIN_IMAGE_SIZE}, got {value!r}")


def index_width(n: int) -> int:
    """Digits of the zero-padded image file names of a split of ``n`` images."""
    return max(1, math.ceil(math.log10(n)))


def generate(
    root: str | Path,
    counts: dict[str, int],
    *,
    image_size: int = 64,
    seed: int = 0,
    causal_hue: bool = True,
    chunk: int = 256,
    show_progress: bool = True,
) -> None:
    """Writes a dataset in the Multimodal3DIdent layout.

    Args:
      root: the root folder (created if missing); its splits must not exist yet.
      counts: pairs per split, ``{"train": n, "val": n, "test": n}``, each >= 1.
      image_size: image height and width in pixels, >= 16.
      seed: every split's factors are a function of ``(seed, split)``.
      causal_hue: the hue depends on x-position (the paper's main run).
      chunk: images rendered per device call.
      show_progress: a tqdm bar per split.

    Raises:
      ConfigError: a bad count, size or seed, or a split folder that already exists.
    """
    from tqdm import tqdm

    root = Path(root)
    for split in SPLITS:
        _check_count(f"--n-{split}", counts.get(split))
    check_image_size(image_size)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed: expected an integer >= 0, got {seed!r}")
    for split in SPLITS:
        if (root / split).exists():
            raise ConfigError(f"{str(root / split)!r}: already exists; choose a new folder")
    root.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(seed)
    for i, split in enumerate(SPLITS):
        n = counts[split]
        factors = sample_factors(jax.random.fold_in(key, i), n, causal_hue=causal_hue)
        with tqdm(total=n, desc=split, unit="img", disable=not show_progress) as bar:
            texts = _write_split(root / split, factors, n, image_size, chunk, bar.update)
        if split == "train":
            Vocabulary.build(tokenize(t) for t in texts).save(root / VOCAB_FILE)


def _write_split(dest: Path, factors, n: int, size: int, chunk: int, progress) -> list[str]:
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "text").mkdir()
        width = index_width(n)
        for start in range(0, n, chunk):
            # Fixed-size chunks (the last one padded by repeating indices) compile once.
            idx = np.minimum(np.arange(start, start + chunk), n - 1)
            images = np.asarray(to_uint8(render_batch(take(factors, idx), size)))
            for j in range(min(chunk, n - start)):
                Image.fromarray(images[j]).save(tmp / "images" / f"{start + j:0{width}d}.png")
            progress(min(chunk, n - start))
        texts = captions(factors)
        # As generate_text.py: a newline after every caption but the last.
        (tmp / "text" / "text_raw.txt").write_text("\n".join(texts))
        _write_csv(tmp / "latents_image.csv", IMAGE_COLUMNS, image_latents(factors))
        _write_csv(tmp / "latents_text.csv", TEXT_COLUMNS, text_latent_columns(factors))
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return texts


def _write_csv(path: Path, columns: tuple[str, ...], data: dict[str, np.ndarray]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(zip(*(data[c].tolist() for c in columns), strict=True))


@dataclass
class Split:
    """One split in memory.

    Attributes:
      images: ``(n, s, s, 3)`` uint8 RGB.
      tokens: ``(n, max_length)`` int32 token ids (see :class:`~jaxmmcl.imgtxt.text.Vocabulary`).
      image_latents: column name -> ``(n,)`` array (float; integer for the discrete factors).
      text_latents: column name -> ``(n,)`` array (``object_color_name`` as strings).
    """

    images: np.ndarray
    tokens: np.ndarray
    image_latents: dict[str, np.ndarray]
    text_latents: dict[str, np.ndarray]

    def __len__(self) -> int:
        return self.images.shape[0]


def load_vocabulary(root: str | Path) -> Vocabulary:
    """The vocabulary of the root's training text, as the official loader builds it every time
    (a ``vocab.json`` in the root is not read, and the dataset's folder is never written)."""
    return Vocabulary.build(tokenize(t) for t in _read_text(Path(root) / "train"))


def _read_text(folder: Path) -> list[str]:
    path = folder / "text" / "text_raw.txt"
    if not path.is_file():
        raise ConfigError(f"{str(path)!r}: missing (not a Multimodal3DIdent split)")
    return sentences(path.read_text())


def _read_csv(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The columns of a latents CSV: numbers (int64 where all are integral, else float64),
    except text columns (names ending in ``_name``).

    Raises:
      ConfigError: naming the file (and line) for a missing file or column, a row with the
        wrong number of fields, or a value in a numeric column that is not a finite number.
    """
    if not path.is_file():
        raise ConfigError(f"{str(path)!r}: missing (not a Multimodal3DIdent split)")
    try:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"{str(path)!r}: not a readable CSV file ({err})") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise ConfigError(f"{str(path)!r}: missing columns {', '.join(missing)}")
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ConfigError(
                f"{str(path)!r}, line {i + 2}: {len(row)} fields, the header has {len(header)}"
            )
    out = {}
    for j, name in enumerate(header):
        values = [row[j] for row in rows]
        if name.endswith("_name"):
            out[name] = np.asarray(values, dtype=object)
            continue
        try:
            numbers = np.asarray(values, np.float64)
            bad = np.flatnonzero(~np.isfinite(numbers))
        except ValueError:  # some value is not a number: find the first
            bad = [next(i for i, v in enumerate(values) if not _is_float(v))]
        if len(bad):
            i = int(bad[0])
            raise ConfigError(
                f"{str(path)!r}, line {i + 2}, column {name}: expected a finite number, "
                f"got {values[i]!r}"
            )
        integral = numbers.size and np.all(numbers == np.round(numbers))
        out[name] = numbers.astype(np.int64) if integral else numbers
    return out


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _load_image(path: Path, size: int | None) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            return np.asarray(img)
    except (OSError, SyntaxError, ValueError) as err:
        # PIL reports truncated or empty files as OSError (UnidentifiedImageError among them).
        raise ConfigError(f"{str(path)!r}: not a readable PNG image ({err})") from None


def _image_paths(folder: Path, n: int) -> list[Path]:
    """``folder``'s PNG files in index order: ``{i}.png`` (zero-padded or not) for i = 0..n-1.

    Raises:
      ConfigError: naming a file whose name is not an index, two files of one index, an index
        outside 0..n-1 or a missing one.
    """
    by_index: dict[int, Path] = {}
    for path in folder.glob("*.png"):
        if not path.stem.isdigit():
            raise ConfigError(f"{str(path)!r}: not an image index (expected e.g. 000042.png)")
        i = int(path.stem)
        if i in by_index:
            raise ConfigError(f"{str(path)!r}: index {i} is also {by_index[i].name!r}")
        if i >= n:
            raise ConfigError(f"{str(path)!r}: index {i}, but the split has {n} latent rows")
        by_index[i] = path
    missing = [i for i in range(n) if i not in by_index]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ConfigError(f"{str(folder)!r}: no image of index {missing[0]}{more}")
    return [by_index[i] for i in range(n)]


def load_split(
    root: str | Path,
    split: str,
    vocab: Vocabulary,
    *,
    image_size: int | None = None,
    workers: int = 4,
) -> Split:
    """Reads one split into memory.

    Args:
      root: the dataset root.
      split: ``"train"``, ``"val"`` or ``"test"``.
      vocab: the vocabulary (from :func:`load_vocabulary`) the captions are tokenised with.
      image_size: resize images to this size (e.g. the real 224 x 224 data to 64); ``None``
        keeps them as stored (they must all have one size).
      workers: threads decoding PNG files.

    Raises:
      ConfigError: missing, extra or damaged files, inconsistent counts or columns, values
        that are not numbers, or images of mixed sizes; the message names the file.
    """
    folder = Path(root) / split
    if not folder.is_dir():
        raise ConfigError(f"{str(folder)!r}: no such split folder")
    texts = _read_text(folder)
    image_cols = _read_csv(folder / "latents_image.csv", IMAGE_COLUMNS)
    text_cols = _read_csv(folder / "latents_text.csv", TEXT_COLUMNS)
    counts = {
        "captions": len(texts),
        "latents_image.csv rows": len(image_cols[IMAGE_COLUMNS[0]]),
        "latents_text.csv rows": len(text_cols[TEXT_COLUMNS[0]]),
    }
    if len(set(counts.values())) != 1 or not texts:
        raise ConfigError(f"{str(folder)!r}: inconsistent or empty split ({counts})")
    paths = _image_paths(folder / "images", len(texts))
    with ThreadPoolExecutor(workers) as pool:
        images = list(pool.map(lambda p: _load_image(p, image_size), paths))
    if len({im.shape for im in images}) != 1:
        raise ConfigError(f"{str(folder)!r}: images of different sizes; pass an image size")
    tokens = vocab.encode(tokenize(t) for t in texts)
    return Split(np.stack(images), tokens, image_cols, text_cols)


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``(n, s, s, 3)`` uint8 images, in [0, 1]
    units; ``(3,)`` float32 each, estimated from the first (at most) 1024 images. Used to
    normalise encoder inputs per channel."""
    x = images[:1024].reshape(-1, 3).astype(np.float64) / 255.0
    return x.mean(0).astype(np.float32), np.maximum(x.std(0), 1e-6).astype(np.float32)
