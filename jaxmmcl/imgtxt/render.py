"""A pure-JAX procedural renderer: one 2-D object on a coloured background under a spotlight.

It stands in for the Blender scenes of Multimodal3DIdent. Every image factor changes the pixels:

* shape: one of seven signed-distance functions (disk, square, triangle, cross, star, ring,
  crescent), standing in for the seven meshes;
* x/y position: the object's centre is the centre of one of 3 x 3 cells;
* alpharot: in-plane rotation by a full turn over [0, 1];
* betarot: rotation about the object's vertical axis, seen as foreshortening of its width by
  ``|cos(pi * beta)|`` (down to :data:`MIN_WIDTH` of the width, so that every shape stays
  recognisable, as the meshes of the real dataset do from every angle);
* gammarot: tilt towards the viewer, seen as a shading gradient across the object whose
  direction turns with gamma;
* object hue: the object's colour at full saturation and value;
* spotlight position and colour: a Gaussian light falloff centred on a point on a circle around
  the scene (angle = position), tinted by the spotlight hue; it shades object and background;
* background hue: the background colour (at saturation 0.5, value 0.6).

Edges are anti-aliased with a sigmoid of the signed distance, so the image is a smooth function
of the continuous factors. :func:`render` renders one record; :func:`render_batch` is the
jitted, vmapped version.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxmmcl.imgtxt.factors import Factors, hsv_to_rgb

# Object radius in scene units (the scene spans [-1, 1]^2; a cell is 2/3 wide).
OBJECT_RADIUS = 0.3
# The narrowest width betarot's foreshortening leaves of a shape (at beta = 0.5). At 0.3, 0.6
# squashed shapes merged in 64 x 64 images: trained image encodings confused the disk with the
# square and the cross with the star mostly at beta near 0.5 (README, image/text experiment).
MIN_WIDTH = 0.75


def _box(p, half_x, half_y):
    q = jnp.abs(p) - jnp.array([half_x, half_y])
    return jnp.linalg.norm(jnp.maximum(q, 0.0), axis=-1) + jnp.minimum(jnp.max(q, axis=-1), 0.0)


def _disk(p):
    return jnp.linalg.norm(p, axis=-1) - 0.9


def _square(p):
    return _box(p, 0.72, 0.72)


def _triangle(p):
    # Equilateral, circumradius 1, apex up (negative y is up in image rows).
    x, y = jnp.abs(p[..., 0]), -p[..., 1]
    k = jnp.sqrt(3.0)
    return jnp.maximum(k / 2 * x + y / 2, -y) - 0.5


def _cross(p):
    return jnp.minimum(_box(p, 0.95, 0.3), _box(p, 0.3, 0.95))


def _star(p):
    # A five-pointed star as a polar radius profile (approximate distance, exact boundary).
    r = jnp.linalg.norm(p, axis=-1)
    phi = jnp.arctan2(p[..., 1], p[..., 0])
    return r - (0.62 + 0.33 * jnp.cos(5 * phi))


def _ring(p):
    return jnp.abs(jnp.linalg.norm(p, axis=-1) - 0.68) - 0.24


def _crescent(p):
    outer = jnp.linalg.norm(p, axis=-1) - 0.9
    inner = jnp.linalg.norm(p - jnp.array([0.45, 0.0]), axis=-1) - 0.7
    return jnp.maximum(outer, -inner)


SHAPES = (_disk, _square, _triangle, _cross, _star, _ring, _crescent)


def _rotation(angle):
    c, s = jnp.cos(angle), jnp.sin(angle)
    return jnp.array([[c, -s], [s, c]])


def render(f: Factors, size: int) -> jnp.ndarray:
    """Renders one pair's image.

    Args:
      f: one factor record (scalar fields).
      size: image height and width in pixels (static).

    Returns:
      ``(size, size, 3)`` float32 RGB in [0, 1].
    """
    coords = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size * 2.0 - 1.0
    # Scene points (x right, y down, as image rows and columns).
    points = jnp.stack(jnp.meshgrid(coords, coords, indexing="xy"), axis=-1)
    centre = (jnp.stack([f.xpos, f.ypos]).astype(jnp.float32) - 1.0) * (2.0 / 3.0)
    local = (points - centre) @ _rotation(2 * jnp.pi * f.alpharot) / OBJECT_RADIUS
    width = MIN_WIDTH + (1.0 - MIN_WIDTH) * jnp.abs(jnp.cos(jnp.pi * f.betarot))
    shape_coords = local / jnp.array([width, 1.0])
    distance = jax.lax.switch(f.shape, SHAPES, shape_coords)
    pixel = OBJECT_RADIUS * size / 2.0
    mask = jax.nn.sigmoid(-distance * pixel / 0.7)[..., None]

    tilt = jnp.array([jnp.cos(2 * jnp.pi * f.gammarot), jnp.sin(2 * jnp.pi * f.gammarot)])
    shading = 0.75 + 0.25 * jnp.clip(local @ tilt, -1.0, 1.0)[..., None]
    obj = hsv_to_rgb(f.hue, 1.0, 1.0) * shading
    background = hsv_to_rgb(f.background, 0.5, 0.6)
    base = mask * obj + (1.0 - mask) * background

    light_angle = 2 * jnp.pi * f.spot_pos
    light_centre = 1.1 * jnp.array([jnp.cos(light_angle), jnp.sin(light_angle)])
    falloff = jnp.exp(-jnp.sum((points - light_centre) ** 2, axis=-1) / (2 * 0.8**2))
    light = 0.5 * (1.0 + hsv_to_rgb(f.spot_color, 1.0, 1.0))
    illumination = (0.45 + 0.75 * falloff)[..., None] * light
    return jnp.clip(base * illumination, 0.0, 1.0)


@functools.partial(jax.jit, static_argnames="size")
def render_batch(f: Factors, size: int) -> jnp.ndarray:
    """Renders a batch: ``f`` with ``(n,)`` fields -> ``(n, size, size, 3)`` float32 in [0, 1]."""
    return jax.vmap(lambda one: render(one, size))(f)


def to_uint8(images: jnp.ndarray) -> jnp.ndarray:
    """[0, 1] floats to uint8 (rounded), as stored in PNG files."""
    return jnp.round(images * 255.0).astype(jnp.uint8)
