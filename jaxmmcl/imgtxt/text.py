"""Captions, tokenisation and the vocabulary, as the dataset's generator and the official loader
make them; and captions built on the device.

A caption fills one of the dataset's five phrasings (:data:`PHRASES`, ``generate_text.py``,
``text_phrasing`` 0-4) with the shape's name, the position ``{YPOS}-{XPOS}`` and the colour
name (with its palette prefix, see :mod:`~jaxmmcl.imgtxt.factors`) in double quotes.

Tokens are NLTK's ``word_tokenize`` of the official loader (:func:`tokenize`): ``top-left`` is
one token, the opening and closing quotes become the distinct tokens `````` and ``''``,
``xkcd:bright`` splits into ``xkcd``, ``:``, ``bright``. The loader's sentences are
``sent_tokenize`` of the whole ``text_raw.txt``, one per caption, which are the file's lines
(:func:`sentences`): every caption is one sentence ending in a full stop.

A :class:`Vocabulary` is the official one: the special tokens ``{pad}`` (id 0), ``{eos}`` (1),
``{unk}`` (2), then the training text's words in order of first appearance; a tokenised caption
is its word ids, then ``{eos}``, then ``{pad}`` up to ``max_length`` (the longest training
sentence + 1). Words missing from the vocabulary map to ``{unk}``; longer sentences are
truncated (their last token is ``{eos}``).

:func:`caption_tokens` builds the token ids of a caption from its factors inside a jitted
program, equal to tokenising the caption string; it serves the fresh-render training mode, with
:func:`full_vocabulary` (every word a caption can hold).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
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
PHRASES = (
    'A {SHAPE} of "{COLOR}" color is visible, positioned at the {YPOS}-{XPOS} of the image.',
    'A "{COLOR}" {SHAPE} is at the {YPOS}-{XPOS} of the image.',
    'The {YPOS}-{XPOS} of the image shows a "{COLOR}" colored {SHAPE}.',
    'At the {YPOS}-{XPOS} of the picture is a {SHAPE} in "{COLOR}" color.',
    'At the {YPOS}-{XPOS} of the image, there is a "{COLOR}" object in the form of a {SHAPE}.',
)
PAD, EOS, UNK = "{pad}", "{eos}", "{unk}"
SPECIALS = (PAD, EOS, UNK)
VOCAB_FILE = "vocab.json"


@functools.cache
def _word_tokenizer():
    # nltk.word_tokenize(s) is sent_tokenize (Punkt, which needs downloaded data) followed by
    # this tokenizer on each sentence; a caption is one sentence, so this alone is the same.
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def tokenize(sentence: str) -> list[str]:
    """NLTK's ``word_tokenize`` of one sentence (the official loader's tokens)."""
    return _word_tokenizer().tokenize(sentence)


def sentences(text_raw: str) -> list[str]:
    """The captions of a ``text_raw.txt``: its lines (one sentence each), without blank ones."""
    return [line for line in text_raw.splitlines() if line.strip()]


def caption(shape: int, xpos: int, ypos: int, color: str, phrasing: int) -> str:
    """The caption of one pair: phrasing ``phrasing`` filled with the factors' words."""
    return PHRASES[phrasing].format(
        SHAPE=SHAPE_NAMES[shape], XPOS=XPOS_NAMES[xpos], YPOS=YPOS_NAMES[ypos], COLOR=color
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
    def build(cls, tokenized: Iterable[Sequence[str]]) -> Vocabulary:
        """The official vocabulary of a tokenised corpus (the training split): the specials,
        then its words in order of first appearance; ``max_length`` = the most tokens in a
        sentence + 1."""
        words: dict[str, None] = dict.fromkeys(SPECIALS)
        longest = 0
        for tokens in tokenized:
            words.update(dict.fromkeys(tokens))
            longest = max(longest, len(tokens))
        if longest == 0:
            raise ConfigError("vocabulary: the training text has no words")
        return cls(tuple(words), longest + 1)

    def encode(self, tokenized: Iterable[Sequence[str]]) -> np.ndarray:
        """Token ids, shape ``(n, max_length)`` int32: words, ``{eos}``, ``{pad}`` padding."""
        rows = []
        unk = self.ids[UNK]
        for tokens in tokenized:
            ids = [self.ids.get(w, unk) for w in tokens][: self.max_length - 1]
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
        """Writes ``vocab.json`` as the official loader does (``{"w2i": ..., "i2w": ...}``),
        atomically."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)

    def to_json(self) -> str:
        """The official ``vocab.json``: ``{"w2i": ..., "i2w": ...}``."""
        i2w = {str(i): t for i, t in enumerate(self.tokens)}
        return json.dumps({"w2i": self.ids, "i2w": i2w}, ensure_ascii=False)


@functools.cache
def full_vocabulary() -> Vocabulary:
    """Every word a caption can hold (the phrasings' words, then the shapes, positions and
    colour names, in order of first appearance), sized for the longest caption."""
    names = color_names()
    longest_name = max(names, key=lambda n: len(_color_tokens(n)))
    corpus = [tokenize(caption(0, 0, 0, longest_name, p)) for p in range(len(PHRASES))]
    vocab = Vocabulary.build(
        [*corpus, list(SHAPE_NAMES), _position_tokens(), *(_color_tokens(n) for n in names)]
    )
    return Vocabulary(vocab.tokens, max(len(c) for c in corpus) + 1)


def _position_tokens() -> list[str]:
    # "{YPOS}-{XPOS}" is one token (a hyphenated word).
    return [tokenize(f"the {y}-{x} of")[1] for y in YPOS_NAMES for x in XPOS_NAMES]


def _color_tokens(name: str) -> list[str]:
    # Every phrasing quotes the colour between spaces: its tokens in that context.
    return tokenize(f'x "{name}" y')[2:-2]


# Placeholders of the slots while a phrasing is tokenised: single tokens that the tokenizer
# leaves alone and that leave their neighbours alone.
_SLOT_WORDS = {"SHAPE": "shapeslot", "POSITION": "positionslot", "COLOR": "colorslot"}
# Item kinds of a tokenised phrasing.
_WORD, _SHAPE, _POSITION, _COLOR, _NONE = range(5)


@functools.cache
def _caption_tables(vocab: Vocabulary) -> dict[str, np.ndarray]:
    """Arrays describing each phrasing as a list of items for :func:`caption_tokens`.

    Returns a dict of
      ``kind``: ``(5, n_items)`` item kind: a fixed word, the shape, the position (one token
        ``{YPOS}-{XPOS}``), the colour (several tokens), or no item (padding);
      ``word``: ``(5, n_items)`` the fixed word's id;
      ``slot_words``: ``(3, n_max, w)`` ids of the shape / position / colour words (rows padded
        with ``{pad}`` to ``w`` words), ``slot_lengths``: ``(3, n_max)`` their lengths.
    """
    ids = vocab.ids
    markers = {_SLOT_WORDS["SHAPE"]: _SHAPE, _SLOT_WORDS["POSITION"]: _POSITION}
    markers[_SLOT_WORDS["COLOR"]] = _COLOR
    phrasings = []
    for phrase in PHRASES:
        filled = phrase.replace("{YPOS}-{XPOS}", _SLOT_WORDS["POSITION"]).format(
            SHAPE=_SLOT_WORDS["SHAPE"], COLOR=_SLOT_WORDS["COLOR"]
        )
        items = [(markers.get(w, _WORD), ids.get(w, ids[UNK])) for w in tokenize(filled)]
        phrasings.append(items)
    n_items = max(len(t) for t in phrasings)
    kind = np.full((len(PHRASES), n_items), _NONE, np.int32)
    word = np.zeros((len(PHRASES), n_items), np.int32)
    for i, items in enumerate(phrasings):
        kind[i, : len(items)] = [k for k, _ in items]
        word[i, : len(items)] = [w for _, w in items]
    slots = [
        [[s] for s in SHAPE_NAMES],
        [[p] for p in _position_tokens()],
        [_color_tokens(n) for n in color_names()],
    ]
    width = max(len(w) for values in slots for w in values)
    rows = max(len(values) for values in slots)
    slot_words = np.zeros((3, rows, width), np.int32)
    slot_lengths = np.zeros((3, rows), np.int32)
    for s, values in enumerate(slots):
        for r, words in enumerate(values):
            slot_words[s, r, : len(words)] = [ids.get(w, ids[UNK]) for w in words]
            slot_lengths[s, r] = len(words)
    return {"kind": kind, "word": word, "slot_words": slot_words, "slot_lengths": slot_lengths}


def tokens_of_factors(
    shape: jnp.ndarray,
    xpos: jnp.ndarray,
    ypos: jnp.ndarray,
    color: jnp.ndarray,
    phrasing: jnp.ndarray,
    vocab: Vocabulary,
) -> jnp.ndarray:
    """Token ids of the captions of ``(n,)`` factor arrays, ``color`` a colour-name index.

    Returns:
      ``(n, vocab.max_length)`` int32, equal to ``vocab.encode`` of the tokenised captions.
    """
    t = {k: jnp.asarray(v) for k, v in _caption_tables(vocab).items()}
    width = t["slot_words"].shape[-1]

    def one(shape, position, color, phrasing):
        kind, word = t["kind"][phrasing], t["word"][phrasing]
        slot_value = jnp.stack([shape, position, color])
        slot = jnp.clip(kind - _SHAPE, 0, 2)
        value = slot_value[slot]
        is_slot = (kind >= _SHAPE) & (kind <= _COLOR)
        length = jnp.where(kind == _WORD, 1, jnp.where(is_slot, t["slot_lengths"][slot, value], 0))
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

    position = ypos * len(XPOS_NAMES) + xpos
    return jax.vmap(one)(shape, position, color, phrasing)


def caption_tokens(f: Factors, vocab: Vocabulary) -> jnp.ndarray:
    """Token ids of the captions of a batch of factors, built inside the traced program.

    Args:
      f: factors with ``(n,)`` fields.
      vocab: the vocabulary (static: its tables become constants).

    Returns:
      ``(n, vocab.max_length)`` int32, equal to ``vocab.encode`` of the tokenised
      :func:`captions`.
    """
    index = color_index(f.hue, f.palette)
    return tokens_of_factors(f.shape, f.xpos, f.ypos, index, f.phrasing, vocab)
