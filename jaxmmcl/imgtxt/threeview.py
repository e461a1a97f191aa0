"""The three-view variant of the image/text experiment: multiview-crl's multimodal experiment
(Yao et al., ICLR 2024, "Multi-View Causal Representation Learning with Partial
Observability") on Multimodal3DIdent-format data, ``sweeps/imgtxt3.yaml`` (``jaxmmcl reproduce
imgtxt3``; the experiment :mod:`jaxmmcl.imgtxt.sweep` with ``data.changed`` set).

Every scene has three views: its image, a second image of it in which chosen factors are
redrawn (:data:`~jaxmmcl.imgtxt.factors.CHANGED` by default: the rotations and the three hues)
and the caption of the first. Multiview-crl searches its dataset for such image pairs; here the
second image is rendered with exactly those factors changed
(:func:`~jaxmmcl.imgtxt.factors.change_factors`, :func:`~jaxmmcl.imgtxt.sweep.render_scenes`).
One image encoder (for both images) and one text encoder are trained with multiview-crl's loss
over the subsets of views: each subset's chunk of the encoding is trained by NT-Xent between
the subset's views (:func:`jaxmmcl.losses.subsets_nt_xent`). The theory (:func:`theory`): a
subset's chunk recovers the factors every view of the subset shares, and not the others. Both
images and the caption share shape and position; the images also the spotlight's position; the
first image and the caption the object's hue (named loosely, by a colour word).

Each subset's chunk is scored per modality as multiview-crl's evaluation does: the image
encoder's chunk on both images of the validation scenes (pooled, each with its own factors),
the text encoder's on the captions, predicting every factor of the modality.
"""

from __future__ import annotations

from jaxmmcl.losses import view_subsets

VIEWS = ("image1", "image2", "text")
# Factor columns of each view that name a Factors field, for the theory's marks.
FIELD = {
    "object_shape": "shape",
    "object_xpos": "xpos",
    "object_ypos": "ypos",
    "object_alpharot": "alpharot",
    "object_betarot": "betarot",
    "object_gammarot": "gammarot",
    "object_color": "hue",
    "spotlight_pos": "spot_pos",
    "spotlight_color": "spot_color",
    "background_color": "background",
    "object_color_index": "hue",
}


def theory(changed: tuple[str, ...]) -> dict[tuple[int, ...], set[str]]:
    """Subset of views -> the :class:`~jaxmmcl.imgtxt.factors.Factors` fields all its views
    share: the images all but ``changed``, the caption shape, position and the first image's
    hue (by its colour name)."""
    image_fields = set(FIELD.values())
    shown = {0: image_fields, 1: image_fields, 2: {"shape", "xpos", "ypos", "hue"}}
    out = {}
    for subset in view_subsets(len(VIEWS)):
        shared = set.intersection(*(shown[v] for v in subset))
        if 1 in subset:
            shared -= set(changed)
        out[subset] = shared
    return out
