"""The image/text experiment: Multimodal3DIdent-format data, image and text encoders, and the
encoding-size sweep of the paper's Figure 3.

Modules, in data-flow order:

* :mod:`~jaxmmcl.imgtxt.factors` -- the dataset's generative factors, their sampling, colour names.
* :mod:`~jaxmmcl.imgtxt.render` -- a pure-JAX procedural renderer of the images.
* :mod:`~jaxmmcl.imgtxt.text` -- caption templates, vocabulary, tokenisation (host and device).
* :mod:`~jaxmmcl.imgtxt.dataset` -- writing and loading the Multimodal3DIdent folder layout.
* :mod:`~jaxmmcl.imgtxt.models` -- ResNet image encoder, convolutional text encoder.
* :mod:`~jaxmmcl.imgtxt.train` -- NT-Xent loss, training vmapped over runs.
* :mod:`~jaxmmcl.imgtxt.evaluate` -- per-factor scores of trained encoders.
* :mod:`~jaxmmcl.imgtxt.sweep` -- the experiment of the shared runner (``sweeps/imgtxt.yaml``,
  ``jaxmmcl reproduce imgtxt``).
* :mod:`~jaxmmcl.imgtxt.threeview` -- multiview-crl's three views (``reproduce imgtxt3``).
* :mod:`~jaxmmcl.imgtxt.cli` -- ``jaxmmcl data generate`` and ``jaxmmcl reproduce imgtxt3``.
"""
