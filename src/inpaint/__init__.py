"""inpaint: diffusion-based image completion — fine-tune, run and fairly benchmark inpainting models.

The package is importable without torch: heavy libraries are imported by the modules that need
them, so ``inpaint --help`` stays instant. Start with :mod:`inpaint.io` (images and masks),
:mod:`inpaint.masks` (mask presets) and :func:`inpaint.models.get_inpainter`.

Convention everywhere: a mask is white (1) where the image is to be filled.
"""

__version__ = "0.1.0"
