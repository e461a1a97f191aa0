"""The generative factors of Multimodal3DIdent, their sampling and the text's colour names.

One image/caption pair is described by a :class:`Factors` record (a leading batch axis when
stacked). Image factors: object shape (7 classes), x and y position (3 cells each), three
rotation angles, object hue, spotlight position and colour, background hue (continuous, in
[0, 1]). Text-only factors: the colour palette the caption names the hue from, and the phrasing
(one of five templates). Shape and positions are shared by both modalities (content); the object
colour is shared loosely (the caption names the nearest colour of a randomly chosen palette).

Colour names are those of the dataset's generator (``generate_latents.py``): the keys of
matplotlib's three palettes (``TABLEAU_COLORS``, ``CSS4_COLORS``, ``XKCD_COLORS``) as matplotlib
spells them (``tab:blue``, ``blue``, ``xkcd:bright aqua``); a name's ``object_color_index`` is
its position in :func:`color_names`, the sorted list of all keys of the three palettes. The name
of a hue in a palette is the generator's nearest neighbour: the palette colour nearest in RGB
(Euclidean) to ``colorsys.hsv_to_rgb(hue, 1, 1)``, among the palette's distinct RGB values in
order of first appearance, the first of equally near ones winning; a value that several names
share (CSS4's ``aqua`` and ``cyan``) takes the last of them, as the generator's
``{rgb: name}`` dictionary does.

Along the hue circle that nearest neighbour is piecewise constant, so :func:`palettes` computes
its intervals once, exactly, in float64 (on each sixth of the circle the RGB point moves along
one axis, and the squared distances differ by linear functions of the hue), and
:func:`color_index` looks a hue up among the interval bounds rounded up to float32: for a
float32 hue the comparison ``hue >= bound`` is then the exact one, so the device gives the
generator's name for every float32 hue.
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


IMAGE_FIELDS = (
    "shape",
    "xpos",
    "ypos",
    "alpharot",
    "betarot",
    "gammarot",
    "hue",
    "spot_pos",
    "spot_color",
    "background",
)
"""The :class:`Factors` fields an image shows (the rest, palette and phrasing, are text's)."""
CHANGED = ("alpharot", "betarot", "gammarot", "hue", "spot_color", "background")
"""The fields the second image of the three-view experiment redraws by default: the rotations
and the three hues (multiview-crl's ``--change-lists`` default for Multimodal3DIdent), so the
two images share shape, position and spotlight position, and all three views shape and
position."""


def change_factors(
    key: jax.Array, f: Factors, fields: tuple[str, ...], *, causal_hue: bool = True
) -> Factors:
    """The factors of a second view of the same scene: every field in ``fields`` redrawn, every
    other kept (multiview-crl's augmented view of Multimodal3DIdent, which its code finds by a
    nearest-neighbour search of the dataset and this draws exactly).

    A redrawn field takes a fresh draw from its marginal (:func:`sample_factors` of ``key``), so
    it may coincide with the old value (a discrete one with probability one over its classes).
    With ``causal_hue`` a redrawn hue stays in the third of [0, 1] of the view's x-position
    (kept or redrawn), and a redrawn x-position moves a kept hue into its own third.

    Args:
      key: the second view's key.
      f: the first view's factors (arrays of shape ``(n,)``).
      fields: names of :class:`Factors` fields shown in images (:data:`IMAGE_FIELDS`).

    Returns:
      The second view's factors, shape ``(n,)`` each.
    """
    unknown = [name for name in fields if name not in IMAGE_FIELDS]
    if unknown:
        raise ValueError(f"change_factors: {unknown[0]!r} is not one of {', '.join(IMAGE_FIELDS)}")
    fresh = sample_factors(key, f.shape.shape[0], causal_hue=False)
    out = f._replace(**{name: getattr(fresh, name) for name in fields})
    if causal_hue and "hue" in fields:
        out = out._replace(hue=(out.xpos + fresh.hue) / N_POSITIONS)
    elif causal_hue and "xpos" in fields:
        # A kept hue keeps its place within its third; unmoved, it is kept exactly.
        moved = (out.xpos - f.xpos) / N_POSITIONS
        out = out._replace(hue=jnp.where(out.xpos == f.xpos, f.hue, f.hue + moved))
    return out


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
    """The three palettes' hue-to-name maps as arrays.

    Attributes:
      names: all colour names of the three palettes, sorted; a name's position is its
        ``object_color_index``.
      bounds: ``(3, m)`` float32: where each palette's intervals of the hue circle after the
        first begin, rounded up to float32, ascending (padded with ``inf``).
      index: ``(3, m + 1)`` int32: the position in ``names`` of each interval's colour.
    """

    names: tuple[str, ...]
    bounds: np.ndarray
    index: np.ndarray


# colorsys.hsv_to_rgb(h, 1, 1) on the sixth [j/6, (j + 1)/6) of the hue circle is
# CORNERS[j] + f * DIRECTIONS[j], with f = 6 h - j in [0, 1).
_CORNERS = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]], float)
_DIRECTIONS = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1], [0, -1, 0], [1, 0, 0], [0, 0, -1]], float)


def hue_intervals(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the nearest of ``rgb`` (``(m, 3)`` float64, in tie-breaking order) to the fully
    saturated hue changes along the circle.

    Returns:
      ``(starts, winners)``: ``starts[i]`` (float64, ascending, ``starts[0] = 0``) is where
      interval i begins, ``winners[i]`` the row of ``rgb`` nearest on it.
    """
    starts: list[float] = []
    winners: list[int] = []
    for j in range(6):
        a, d = _CORNERS[j], _DIRECTIONS[j]
        # ||e - a - f d||^2 = c_e - 2 f b_e + f^2: the nearest minimises c_e - 2 f b_e.
        c = np.sum((rgb - a) ** 2, axis=1)
        b = (rgb - a) @ d
        f, w = 0.0, int(np.argmin(c))
        while True:
            if not winners or winners[-1] != w:
                starts.append((j + f) / 6)
                winners.append(w)
            ahead = b > b[w]
            crossing = np.full(len(c), np.inf)
            crossing[ahead] = (c[ahead] - c[w]) / (2 * (b[ahead] - b[w]))
            crossing[crossing <= f] = np.inf
            f_next = crossing.min()
            if f_next >= 1:
                break
            # Past a crossing the steepest of the lines that meet there is lowest (the first
            # of identical ones, as the generator's strict comparison keeps).
            tied = np.flatnonzero(crossing == f_next)
            w, f = int(tied[np.argmax(b[tied])]), f_next
    return np.asarray(starts), np.asarray(winners)


def _ceil_float32(x: float) -> np.float32:
    """The smallest float32 >= ``x``."""
    v = np.float32(x)
    return v if float(v) >= x else np.nextafter(v, np.float32(np.inf))


@functools.cache
def palettes() -> Palettes:
    """matplotlib's TABLEAU, CSS4 and XKCD colours, in that palette order (module docstring)."""
    import matplotlib.colors as mcolors

    tables = [mcolors.TABLEAU_COLORS, mcolors.CSS4_COLORS, mcolors.XKCD_COLORS]
    names = tuple(sorted(name for table in tables for name in table))
    position = {name: i for i, name in enumerate(names)}
    per_palette = []
    for table in tables:
        # The generator's {rgb: name}: first-appearance order of the values, last name kept.
        by_rgb = {mcolors.to_rgb(value): name for name, value in table.items()}
        starts, winners = hue_intervals(np.asarray(list(by_rgb), np.float64))
        entry_names = list(by_rgb.values())
        bounds = np.asarray([_ceil_float32(x) for x in starts[1:]], np.float32)
        per_palette.append((bounds, [position[entry_names[w]] for w in winners]))
    m = max(len(b) for b, _ in per_palette)
    bounds = np.full((N_PALETTES, m), np.inf, np.float32)
    index = np.zeros((N_PALETTES, m + 1), np.int32)
    for p, (b, w) in enumerate(per_palette):
        bounds[p, : len(b)] = b
        index[p, : len(w)] = w
    return Palettes(names, bounds, index)


def color_names() -> tuple[str, ...]:
    """All colour names (sorted); a name's position is its ``object_color_index``."""
    return palettes().names


@jax.jit
def color_index(hue: jnp.ndarray, palette: jnp.ndarray) -> jnp.ndarray:
    """Index (into :func:`color_names`) of the name the generator gives ``hue`` in ``palette``.

    Exact for float32 hues in [0, 1] (module docstring); 1.0 names as 0.0 does, since
    ``colorsys`` wraps it. Works on scalars or arrays of equal shape; jittable.
    """
    table = palettes()
    hue = jnp.asarray(hue, jnp.float32)
    hue = jnp.where(hue >= 1.0, 0.0, hue)
    bounds = jnp.asarray(table.bounds)[palette]
    interval = jnp.sum(bounds <= hue[..., None], axis=-1)
    return jnp.take_along_axis(jnp.asarray(table.index)[palette], interval[..., None], -1)[..., 0]


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
