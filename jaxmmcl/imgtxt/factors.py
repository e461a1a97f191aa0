"""The generative factors of Multimodal3DIdent, their sampling and the text's colour names.

One image/caption pair is described by a :class:`Factors` record (a leading batch axis when
stacked). Image factors: object shape (7 classes), x and y position (3 cells each), three
rotation angles, object hue, spotlight position and colour, background hue (continuous, in
[0, 1]). Text-only factors: the colour palette the caption names the hue from, and the phrasing
(one of five templates). Shape and positions are shared by both modalities (content); the object
colour is shared loosely (the caption names the nearest colour of a randomly chosen palette).

Colour names come from matplotlib's three palettes (``TABLEAU_COLORS``, ``CSS4_COLORS``,
``XKCD_COLORS``) with their ``tab:``/``xkcd:`` prefixes removed. The name of a hue is the
palette entry nearest in RGB to the hue at full saturation and value; its index is its position
in :func:`color_names` (the sorted union of the three palettes' names).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

N_SHAPES = 7
N_POSITIONS = 3
N_PHRASINGS = 5
N_PALETTES = 3

IMAGE_COLUMNS = (
    "object_shape",
    "object_xpos",
    "object_ypos",
    "object_zpos",
    "object_alpharot",
    "object_betarot",
    "object_gammarot",
    "object_color",
    "spotlight_pos",
    "spotlight_color",
    "background_color",
)
TEXT_COLUMNS = (
    "object_shape",
    "object_xpos",
    "object_ypos",
    "object_zpos",
    "object_color_name",
    "object_color_index",
    "text_phrasing",
)


class Factors(NamedTuple):
    """Factors of one pair (scalars) or of a batch (arrays of shape ``(n,)``).

    Attributes:
      shape: int32 in ``[0, 7)``.
      xpos, ypos: int32 in ``{0, 1, 2}`` (left/center/right, top/mid/bottom).
      alpharot: in-plane rotation, float in [0, 1] (a full turn).
      betarot: out-of-plane rotation about the object's vertical axis (foreshortening), [0, 1].
      gammarot: tilt towards the viewer, seen as the direction of the shading gradient, [0, 1].
      hue: object hue, [0, 1].
      spot_pos: spotlight position (angle around the scene), [0, 1].
      spot_color: spotlight hue, [0, 1].
      background: background hue, [0, 1].
      palette: int32 in ``{0, 1, 2}``: the palette the caption names the hue from (text only).
      phrasing: int32 in ``[0, 5)``: the caption template (text only).
    """

    shape: jnp.ndarray
    xpos: jnp.ndarray
    ypos: jnp.ndarray
    alpharot: jnp.ndarray
    betarot: jnp.ndarray
    gammarot: jnp.ndarray
    hue: jnp.ndarray
    spot_pos: jnp.ndarray
    spot_color: jnp.ndarray
    background: jnp.ndarray
    palette: jnp.ndarray
    phrasing: jnp.ndarray


def sample_factors(key: jax.Array, n: int, *, causal_hue: bool = True) -> Factors:
    """Draws ``n`` independent factor records (arrays of shape ``(n,)``); a pure function of key.

    Discrete factors are uniform over their classes; continuous ones uniform on [0, 1]. With
    ``causal_hue`` (the paper's main run) the hue is uniform on the third of [0, 1] that belongs
    to the x-position, ``(xpos + u) / 3``, so it depends causally on x.
    """
    keys = jax.random.split(key, 12)

    def integer(k, high):
        return jax.random.randint(k, (n,), 0, high, dtype=jnp.int32)

    def uniform(k):
        return jax.random.uniform(k, (n,), jnp.float32)

    xpos = integer(keys[1], N_POSITIONS)
    hue = uniform(keys[6])
    if causal_hue:
        hue = (xpos + hue) / N_POSITIONS
    return Factors(
        shape=integer(keys[0], N_SHAPES),
        xpos=xpos,
        ypos=integer(keys[2], N_POSITIONS),
        alpharot=uniform(keys[3]),
        betarot=uniform(keys[4]),
        gammarot=uniform(keys[5]),
        hue=hue,
        spot_pos=uniform(keys[7]),
        spot_color=uniform(keys[8]),
        background=uniform(keys[9]),
        palette=integer(keys[10], N_PALETTES),
        phrasing=integer(keys[11], N_PHRASINGS),
    )


def take(f: Factors, idx) -> Factors:
    """The records ``idx`` (an index array or slice) of a batch of factors."""
    return jax.tree.map(lambda a: a[idx], f)


def hsv_to_rgb(h: jnp.ndarray, s: jnp.ndarray | float, v: jnp.ndarray | float) -> jnp.ndarray:
    """HSV to RGB (matplotlib's convention, hue periodic in [0, 1]); shape ``h.shape + (3,)``."""
    h = jnp.asarray(h)[..., None] % 1.0
    offsets = jnp.array([0.0, 2.0 / 3.0, 1.0 / 3.0])
    # The fully saturated colour is a piecewise-linear function of the hue per channel.
    pure = jnp.clip(jnp.abs(((h + offsets) % 1.0) * 6.0 - 3.0) - 1.0, 0.0, 1.0)
    s = jnp.asarray(s)[..., None]
    v = jnp.asarray(v)[..., None]
    return v * (1.0 - s + s * pure)


class Palettes(NamedTuple):
    """The three palettes as arrays (entries padded with far-away colours).

    Attributes:
      names: all colour names, sorted; a name's position is its ``object_color_index``.
      rgb: ``(3, m, 3)`` float32 RGB of each palette's entries.
      index: ``(3, m)`` int32 position in ``names`` of each entry.
    """

    names: tuple[str, ...]
    rgb: np.ndarray
    index: np.ndarray


@functools.cache
def palettes() -> Palettes:
    """matplotlib's TABLEAU, CSS4 and XKCD colours, in that palette order."""
    import matplotlib.colors as mcolors

    tables = [mcolors.TABLEAU_COLORS, mcolors.CSS4_COLORS, mcolors.XKCD_COLORS]
    stripped = [{k.split(":", 1)[-1]: v for k, v in t.items()} for t in tables]
    names = tuple(sorted(set().union(*stripped)))
    position = {name: i for i, name in enumerate(names)}
    m = max(len(t) for t in stripped)
    # Padding entries sit far outside the RGB cube, so they are never the nearest colour.
    rgb = np.full((N_PALETTES, m, 3), 1e3, np.float32)
    index = np.zeros((N_PALETTES, m), np.int32)
    for p, table in enumerate(stripped):
        for j, (name, hex_) in enumerate(table.items()):
            rgb[p, j] = mcolors.to_rgb(hex_)
            index[p, j] = position[name]
    return Palettes(names, rgb, index)


def color_names() -> tuple[str, ...]:
    """All colour names (sorted); a name's position is its ``object_color_index``."""
    return palettes().names


@jax.jit
def color_index(hue: jnp.ndarray, palette: jnp.ndarray) -> jnp.ndarray:
    """Index (into :func:`color_names`) of the colour naming ``hue`` in ``palette``.

    The nearest entry of the palette in RGB to the hue at full saturation and value. Works on
    scalars or arrays of equal shape; jittable.
    """
    table = palettes()
    target = hsv_to_rgb(hue, 1.0, 1.0)
    entries = jnp.asarray(table.rgb)[palette]
    nearest = jnp.argmin(jnp.sum((entries - target[..., None, :]) ** 2, axis=-1), axis=-1)
    return jnp.take_along_axis(jnp.asarray(table.index)[palette], nearest[..., None], -1)[..., 0]


def image_latents(f: Factors) -> dict[str, np.ndarray]:
    """The columns of ``latents_image.csv`` for a batch of factors (host arrays, ``(n,)``)."""
    f = jax.tree.map(np.asarray, f)
    return {
        "object_shape": f.shape,
        "object_xpos": f.xpos,
        "object_ypos": f.ypos,
        "object_zpos": np.zeros_like(f.shape),
        "object_alpharot": f.alpharot,
        "object_betarot": f.betarot,
        "object_gammarot": f.gammarot,
        "object_color": f.hue,
        "spotlight_pos": f.spot_pos,
        "spotlight_color": f.spot_color,
        "background_color": f.background,
    }


def text_latents(f: Factors) -> dict[str, np.ndarray]:
    """The columns of ``latents_text.csv`` for a batch of factors (host arrays, ``(n,)``)."""
    index = np.asarray(color_index(f.hue, f.palette))
    names = np.array(color_names(), dtype=object)[index]
    return {
        "object_shape": np.asarray(f.shape),
        "object_xpos": np.asarray(f.xpos),
        "object_ypos": np.asarray(f.ypos),
        "object_zpos": np.zeros_like(np.asarray(f.shape)),
        "object_color_name": names,
        "object_color_index": index,
        "text_phrasing": np.asarray(f.phrasing),
    }
