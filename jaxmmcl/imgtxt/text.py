"""Captions: five templates, word tokenisation, the vocabulary, and captions built on the device.

A caption fills one of :data:`TEMPLATES` with the shape's name, the position words and the
colour name (in double quotes, as colour names may have several words). Tokens are words and
single punctuation characters (:func:`split_words`). A :class:`Vocabulary` lists the special
tokens ``{pad}`` (id 0), ``{eos}`` (1), ``{unk}`` (2) and then the words, sorted; a tokenised
caption is its word ids, then ``{eos}``, then ``{pad}`` up to ``max_length`` (the longest
training sentence + 1). Words missing from the vocabulary map to ``{unk}``; longer sentences are
truncated (their last token is ``{eos}``).

:func:`caption_tokens` builds the token ids of a caption from its factors inside a jitted
program, equal to tokenising the caption string (for a vocabulary that contains every word the
templates can produce, :func:`full_vocabulary`); it serves the file-free training mode.
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmmcl.config import ConfigError
from jaxmmcl.imgtxt.factors import Factors, color_index, color_names

SHAPE_NAMES = ("teapot", "hare", "dragon", "cow", "armadillo", "horse", "head")
XPOS_NAMES = ("left", "center", "right")
YPOS_NAMES = ("top", "mid", "bottom")
TEMPLATES = (
    'A "{color}" {shape} is at the {ypos}-{xpos} of the image.',
    'The {shape} at the {ypos}-{xpos} of the picture is "{color}".',
    'There is a "{color}" {shape} in the {ypos}-{xpos} corner.',
    'At the {ypos}-{xpos} of the image we see a {shape} coloured "{color}".',
    'This picture shows a {shape}, painted "{color}", at the {ypos}-{xpos}.',
)
PAD, EOS, UNK = "{pad}", "{eos}", "{unk}"
SPECIALS = (PAD, EOS, UNK)
VOCAB_FILE = "vocab.json"

_WORD = re.compile(r"\w+|[^\w\s]")


def split_words(sentence: str) -> list[str]:
    """Word tokens: runs of letters/digits/underscores, and single punctuation characters."""
    return _WORD.findall(sentence)


def caption(shape: int, xpos: int, ypos: int, color: str, phrasing: int) -> str:
    """The caption of one pair: template ``phrasing`` filled with the factors' words."""
    return TEMPLATES[phrasing].format(
        shape=SHAPE_NAMES[shape], xpos=XPOS_NAMES[xpos], ypos=YPOS_NAMES[ypos], color=color
    )


def captions(f: Factors) -> list[str]:
    """Captions of a batch of factors (host strings, one per record)."""
    index = np.asarray(color_index(f.hue, f.palette))
    names = color_names()
    fields = (np.asarray(a) for a in (f.shape, f.xpos, f.ypos, f.phrasing))
    return [
        caption(int(s), int(x), int(y), names[c], int(p))
        for s, x, y, p, c in zip(*fields, index, strict=True)
    ]


@dataclass(frozen=True)
class Vocabulary:
    """Token list (id = position; the first three are ``{pad}``, ``{eos}``, ``{unk}``) and the
    padded sequence length ``max_length`` (longest sentence + 1 for ``{eos}``)."""

    tokens: tuple[str, ...]
    max_length: int

    @functools.cached_property
    def ids(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    @property
    def size(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, sentences: Iterable[str]) -> Vocabulary:
        """The vocabulary of a corpus (the training split): its words, sorted, after the
        specials; ``max_length`` = the most words in a sentence + 1."""
        words, longest = set(), 0
        for sentence in sentences:
            tokens = split_words(sentence)
            words.update(tokens)
            longest = max(longest, len(tokens))
        if longest == 0:
            raise ConfigError("vocabulary: the training text has no words")
        return cls(SPECIALS + tuple(sorted(words - set(SPECIALS))), longest + 1)

    def encode(self, sentences: Iterable[str]) -> np.ndarray:
        """Token ids, shape ``(n, max_length)`` int32: words, ``{eos}``, ``{pad}`` padding."""
        rows = []
        unk = self.ids[UNK]
        for sentence in sentences:
            ids = [self.ids.get(w, unk) for w in split_words(sentence)][: self.max_length - 1]
            rows.append(ids + [self.ids[EOS]] + [0] * (self.max_length - 1 - len(ids)))
        return np.asarray(rows, np.int32).reshape(-1, self.max_length)

    def decode(self, ids: np.ndarray) -> list[list[str]]:
        """Words of each row of ``(n, max_length)`` ids, up to (excluding) ``{eos}``."""
        out = []
        for row in np.asarray(ids):
            words = []
            for i in row:
                if i == self.ids[EOS]:
                    break
                words.append(self.tokens[i])
            out.append(words)
        return out

    def save(self, path: Path) -> None:
        """Writes the vocabulary as JSON (``tokens``, ``max_length``), atomically."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"tokens": list(self.tokens), "max_length": self.max_length}))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        """Reads a vocabulary written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
            vocab = cls(tuple(data["tokens"]), int(data["max_length"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"vocabulary {str(path)!r}: unreadable ({err})") from None
        if vocab.tokens[:3] != SPECIALS or vocab.max_length < 2:
            raise ConfigError(f"vocabulary {str(path)!r}: not a vocabulary file")
        return vocab


@functools.cache
def full_vocabulary() -> Vocabulary:
    """A vocabulary of every word the templates can produce, sized for the longest caption."""
    names = color_names()
    fixed = [t.format(shape="", xpos="", ypos="", color="") for t in TEMPLATES]
    vocab = Vocabulary.build([*fixed, *SHAPE_NAMES, *XPOS_NAMES, *YPOS_NAMES, *names])
    longest_name = max(len(split_words(n)) for n in names)
    longest = max(len(split_words(c)) for c in fixed) + 3 + longest_name
    return Vocabulary(vocab.tokens, longest + 1)


@functools.cache
def _caption_tables(vocab: Vocabulary) -> dict[str, np.ndarray]:
    """Arrays describing each template as a list of items for :func:`caption_tokens`.

    Returns a dict of
      ``kind``: ``(5, n_items)`` item kind: 0 a fixed word, 1 shape, 2 xpos, 3 ypos, 4 colour,
        5 no item (padding);
      ``word``: ``(5, n_items)`` the fixed word's id (kind 0);
      ``slot_words``: ``(4, n_max, w)`` ids of the shape / xpos / ypos / colour words (rows
        padded with ``{pad}`` to ``w`` words), ``slot_lengths``: ``(4, n_max)`` their lengths.
    """
    ids = vocab.ids
    markers = {"shape": 1, "xpos": 2, "ypos": 3, "color": 4}
    templates = []
    for template in TEMPLATES:
        items = []
        for literal, field, _, _ in string.Formatter().parse(template):
            items += [(0, ids.get(w, ids[UNK])) for w in split_words(literal)]
            if field is not None:
                items.append((markers[field], 0))
        templates.append(items)
    n_items = max(len(t) for t in templates)
    kind = np.full((len(TEMPLATES), n_items), 5, np.int32)
    word = np.zeros((len(TEMPLATES), n_items), np.int32)
    for i, items in enumerate(templates):
        kind[i, : len(items)] = [k for k, _ in items]
        word[i, : len(items)] = [w for _, w in items]
    slots = [SHAPE_NAMES, XPOS_NAMES, YPOS_NAMES, color_names()]
    split = [[split_words(v) for v in values] for values in slots]
    width = max(len(w) for values in split for w in values)
    rows = max(len(values) for values in slots)
    slot_words = np.zeros((4, rows, width), np.int32)
    slot_lengths = np.zeros((4, rows), np.int32)
    for s, values in enumerate(split):
        for r, words in enumerate(values):
            slot_words[s, r, : len(words)] = [ids.get(w, ids[UNK]) for w in words]
            slot_lengths[s, r] = len(words)
    return {"kind": kind, "word": word, "slot_words": slot_words, "slot_lengths": slot_lengths}


def caption_tokens(f: Factors, vocab: Vocabulary) -> jnp.ndarray:
    """Token ids of the captions of a batch of factors, built inside the traced program.

    Args:
      f: factors with ``(n,)`` fields.
      vocab: the vocabulary (static: its tables become constants).

    Returns:
      ``(n, vocab.max_length)`` int32, equal to ``vocab.encode(captions(f))``.
    """
    t = {k: jnp.asarray(v) for k, v in _caption_tables(vocab).items()}
    width = t["slot_words"].shape[-1]

    def one(shape, xpos, ypos, color, phrasing):
        kind, word = t["kind"][phrasing], t["word"][phrasing]
        slot_value = jnp.stack([shape, xpos, ypos, color])
        slot = jnp.clip(kind - 1, 0, 3)
        value = slot_value[slot]
        is_slot = (kind >= 1) & (kind <= 4)
        length = jnp.where(kind == 0, 1, jnp.where(is_slot, t["slot_lengths"][slot, value], 0))
        words = jnp.where(
            is_slot[:, None],
            t["slot_words"][slot, value],
            jnp.zeros((width,), jnp.int32).at[0].set(1)[None, :] * word[:, None],
        )
        start = jnp.cumsum(length) - length
        position = start[:, None] + jnp.arange(width)
        valid = jnp.arange(width) < length[:, None]
        # Invalid entries and words past the truncation point go to an out-of-range position.
        position = jnp.where(valid & (position < vocab.max_length - 1), position, vocab.max_length)
        out = jnp.zeros((vocab.max_length,), jnp.int32)
        out = out.at[position.ravel()].set(words.ravel(), mode="drop")
        n_words = jnp.minimum(jnp.sum(length), vocab.max_length - 1)
        return out.at[n_words].set(vocab.ids[EOS])

    index = color_index(f.hue, f.palette)
    return jax.vmap(one)(f.shape, f.xpos, f.ypos, index, f.phrasing)
