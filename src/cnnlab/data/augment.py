"""Batched data augmentation on the device, with per-sample random parameters.

``torchvision.transforms.v2`` draws one set of random parameters per call, i.e. the same crop or
flip for the whole batch; the notes' augmentation draws them per image. So the random parts are
vectorised here (one ``torch.rand`` per batch), and v2's functional kernels do the pixel work
where one exists (flip, grey-scale). All functions take float images in [0, 1], (B, C, H, W),
and a ``torch.Generator`` so that the same seed gives the same batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from cnnlab.errors import ConfigError


def _uniform(n: int, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=device)


def random_crop(x: torch.Tensor, pad: int, g: torch.Generator, mode: str = "zeros") -> torch.Tensor:
    """Pad each side by ``pad`` and cut an HxW window at a random offset in [0, 2 pad] per image.

    Equivalent to translating each image by (dy, dx) in [-pad, pad]^2, filling with zeros (or the
    reflection of the border).
    """
    if pad <= 0:
        return x
    B, C, H, W = x.shape
    padded = F.pad(x, (pad,) * 4, mode="reflect" if mode == "reflect" else "constant")
    off_y = torch.randint(0, 2 * pad + 1, (B,), generator=g, device=x.device)
    off_x = torch.randint(0, 2 * pad + 1, (B,), generator=g, device=x.device)
    rows = off_y[:, None] + torch.arange(H, device=x.device)  # (B, H)
    cols = off_x[:, None] + torch.arange(W, device=x.device)  # (B, W)
    batch = torch.arange(B, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Mirror the width axis of each image with probability ``p``."""
    if p <= 0:
        return x
    return _mirror_where(x, torch.rand(len(x), generator=g, device=x.device) < p)


def _mirror_where(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """The images of ``x`` (B, C, H, W) mirrored where ``flip`` (B,) is True."""
    return torch.where(flip[:, None, None, None], TF.horizontal_flip(x), x)


def _hash_uniform(index: torch.Tensor, seed: int) -> torch.Tensor:
    """A uniform number in [0, 1) per integer ``index``, fixed by (seed, index): two rounds of a
    32-bit integer mixer (the "lowbias32" finaliser), no state to save or resume."""
    x = (index.long() * 0x9E3779B1 + seed * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF
    for _ in range(2):
        x = ((x ^ (x >> 16)) * 0x7FEB352D) & 0xFFFFFFFF
        x = ((x ^ (x >> 15)) * 0x846CA68B) & 0xFFFFFFFF
    x = x ^ (x >> 16)
    return x.double() / 2.0 ** 32


def alternate_flip(x: torch.Tensor, p: float, index: torch.Tensor, epoch: int,
                   seed: int = 0) -> torch.Tensor:
    """airbench's alternating flip (Jordan 2024, Sec. 3.6): image ``index`` starts mirrored with
    probability ``p`` (drawn once, from (seed, index)), and its state switches every epoch —
    mirrored in epoch e iff ``start XOR (e odd)`` — so over two epochs every image is seen both
    ways, instead of a fresh coin per epoch."""
    if p <= 0:
        return x
    start = _hash_uniform(index.to(x.device), seed) < p
    return _mirror_where(x, start ^ bool(epoch % 2))


def affine(x: torch.Tensor, degrees: torch.Tensor | float, scale: torch.Tensor | float = 1.0,
           shift: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate each image clockwise by ``degrees`` about its centre, scale its content by
    ``scale`` (> 1 enlarges) and move it by ``shift`` (B, 2), fractions of the size per axis.

    The transform of ``torchvision.transforms.v2.functional.affine`` (same angle and scale
    convention), for a batch with per-image parameters: one grid per image in normalised
    coordinates (``F.affine_grid``, where a shift of ``t`` of the size is ``2 t``), the inverse map
    ``[[cos, sin], [-sin, cos]] / scale``, bilinear sampling, zeros outside.
    """
    B = len(x)
    angle = torch.as_tensor(degrees, dtype=torch.float32, device=x.device).expand(B) * (math.pi / 180)
    factor = torch.as_tensor(scale, dtype=torch.float32, device=x.device).expand(B)
    shift = torch.zeros(B, 2, device=x.device) if shift is None else shift * 2
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, sin, shift[:, 0]], 1),
                         torch.stack([-sin, cos, shift[:, 1]], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(x: torch.Tensor, degrees: float, translate: float, g: torch.Generator,
                  scale: float = 0.0) -> torch.Tensor:
    """Rotate by U(-degrees, degrees) about the centre, shift by U(-t, t) of the size per axis and
    scale by a factor U(1 - scale, 1 + scale) (drawn only when ``scale`` > 0), per image
    (:func:`affine`)."""
    if degrees <= 0 and translate <= 0 and scale <= 0:
        return x
    B = len(x)
    angle = _uniform(B, -degrees, degrees, g, x.device)
    shift = _uniform(2 * B, -translate, translate, g, x.device).view(B, 2)
    factor = _uniform(B, 1 - scale, 1 + scale, g, x.device) if scale > 0 else 1.0
    return affine(x, -angle, factor, shift)


def random_erase(x: torch.Tensor, p: float, area: tuple[float, float], g: torch.Generator,
                 fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Random erasing (Zhong et al., AAAI 2020): with probability ``p`` per image, set a rectangle
    of area ``s H W`` (s ~ U(area)) and aspect ratio r (log r ~ U(log 0.3, log 3.3)) to ``fill``."""
    if p <= 0:
        return x
    B, C, H, W = x.shape
    dev = x.device
    s = _uniform(B, area[0], area[1], g, dev) * H * W
    r = torch.exp(_uniform(B, math.log(0.3), math.log(1 / 0.3), g, dev))
    h = torch.sqrt(s * r).round().clamp(1, H)
    w = torch.sqrt(s / r).round().clamp(1, W)
    top = (torch.rand(B, generator=g, device=dev) * (H - h + 1)).floor()
    left = (torch.rand(B, generator=g, device=dev) * (W - w + 1)).floor()
    on = torch.rand(B, generator=g, device=dev) < p
    ys = torch.arange(H, device=dev)[None, :, None]
    xs = torch.arange(W, device=dev)[None, None, :]
    box = ((ys >= top[:, None, None]) & (ys < (top + h)[:, None, None])
           & (xs >= left[:, None, None]) & (xs < (left + w)[:, None, None]) & on[:, None, None])
    fill = torch.as_tensor(fill, dtype=x.dtype, device=dev).view(1, -1, 1, 1)
    return torch.where(box[:, None], fill, x)


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float,
                 g: torch.Generator) -> torch.Tensor:
    """Per-image brightness (scale), contrast (blend with the image's mean grey) and saturation
    (blend with the grey image, RGB only) factors, each uniform in [1 - v, 1 + v]; clamped to [0, 1]."""
    B, dev = len(x), x.device
    if brightness > 0:
        x = x * _uniform(B, 1 - brightness, 1 + brightness, g, dev).view(B, 1, 1, 1)
    if contrast > 0:
        grey = TF.rgb_to_grayscale(x) if x.shape[1] == 3 else x
        mean = grey.mean(dim=(1, 2, 3), keepdim=True)
        f = _uniform(B, 1 - contrast, 1 + contrast, g, dev).view(B, 1, 1, 1)
        x = f * x + (1 - f) * mean
    if saturation > 0 and x.shape[1] == 3:
        f = _uniform(B, 1 - saturation, 1 + saturation, g, dev).view(B, 1, 1, 1)
        x = f * x + (1 - f) * TF.rgb_to_grayscale(x, num_output_channels=3)
    return x.clamp(0, 1)


def rgb_eigen(images: torch.Tensor, max_images: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (3,) and eigenvectors (3, 3; columns) of the RGB covariance of uint8 images
    (N, 3, H, W), in [0, 1] units, over up to ``max_images`` images (AlexNet, Sec. 4.1)."""
    pixels = images[:max_images].permute(1, 0, 2, 3).reshape(3, -1).double() / 255  # (3, P)
    cov = torch.cov(pixels)
    eigval, eigvec = torch.linalg.eigh(cov)
    return eigval.float(), eigvec.float()


def pca_lighting(x: torch.Tensor, alpha_std: float, eigval: torch.Tensor, eigvec: torch.Tensor,
                 g: torch.Generator) -> torch.Tensor:
    """AlexNet's colour augmentation: add ``[p1 p2 p3] [a1 l1, a2 l2, a3 l3]^T`` to every pixel of
    an image, with p_i, l_i the eigenvectors/values of the RGB covariance and a_i ~ N(0, alpha_std)
    drawn once per image."""
    if alpha_std <= 0:
        return x
    alpha = torch.randn(len(x), 3, generator=g, device=x.device) * alpha_std  # (B, 3)
    delta = (alpha * eigval.to(x.device)) @ eigvec.to(x.device).T  # (B, 3): sum_i a_i l_i p_i
    return x + delta.to(x.dtype)[:, :, None, None]


def _beta(alpha: float, g: torch.Generator) -> float:
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=g.device))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mixup(x: torch.Tensor, targets: torch.Tensor, alpha: float,
          g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """mixup (Zhang et al. 2018): ``lam x + (1 - lam) x[perm]`` and the same for the one-hot
    ``targets`` (B, K), lam ~ Beta(alpha, alpha) once per batch."""
    lam = _beta(alpha, g)
    perm = torch.randperm(len(x), generator=g, device=x.device)
    return lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm]


def cutmix(x: torch.Tensor, targets: torch.Tensor, alpha: float,
           g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (Yun et al. 2019): paste a box of area ``(1 - lam) H W`` from ``x[perm]``; the
    targets mix in proportion to the pasted area actually used (after clipping at the border)."""
    B, _, H, W = x.shape
    lam = _beta(alpha, g)
    perm = torch.randperm(B, generator=g, device=x.device)
    cut = math.sqrt(1 - lam)
    h, w = round(H * cut), round(W * cut)
    cy, cx = (int(v) for v in torch.randint(0, 1 << 30, (2,), generator=g, device=g.device))
    cy, cx = cy % H, cx % W
    top, bottom = max(cy - h // 2, 0), min(cy + h - h // 2, H)
    left, right = max(cx - w // 2, 0), min(cx + w - w // 2, W)
    x = x.clone()
    x[:, :, top:bottom, left:right] = x[perm, :, top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (H * W)
    return x, lam * targets + (1 - lam) * targets[perm]


class Augmenter:
    """The whole pipeline for one batch, in the order: to [0, 1], crop, flip, rotate/translate/scale,
    colour jitter, PCA lighting, erase, normalise, then mixup or cutmix on the normalised batch.

    ``options`` is any object with the fields of :class:`cnnlab.train.config.AugmentConfig`.
    ``eigen`` holds the RGB eigenvalues/vectors for PCA lighting (see :func:`rgb_eigen`).
    Called as ``augmenter(images_uint8, labels, generator) -> (images, targets)``; targets are
    class indices, or soft (B, K) rows summing to 1 when mixup/cutmix is on. With
    ``flip_mode="alternate"`` (:func:`alternate_flip`) it needs the images' indices in the data
    set and the epoch: :attr:`needs_index` is then True, and the loader passes
    ``index=`` and ``epoch=``.
    """

    def __init__(self, options, mean: tuple[float, ...], std: tuple[float, ...], num_classes: int,
                 eigen: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0) -> None:
        self.o = options
        self.mean, self.std, self.num_classes, self.eigen = mean, std, num_classes, eigen
        self.seed = seed
        self.needs_index = getattr(options, "flip_mode", "random") == "alternate"

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, g: torch.Generator,
                 index: torch.Tensor | None = None,
                 epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        o, dev = self.o, images.device
        x = images.float() / 255  # (B, C, H, W) in [0, 1]
        x = random_crop(x, o.crop_pad, g, o.pad_mode)
        if self.needs_index:
            if index is None:
                raise ConfigError("augment.flip_mode=alternate needs the images' indices: call the "
                                 "augmenter with index= and epoch=")
            x = alternate_flip(x, o.flip, index, epoch, self.seed)
        else:
            x = random_flip(x, o.flip, g)
        x = random_affine(x, o.rotate, o.translate, g, o.scale)
        if o.brightness or o.contrast or o.saturation:
            x = color_jitter(x, o.brightness, o.contrast, o.saturation, g)
        if o.pca_lighting and x.shape[1] == 3 and self.eigen is not None:
            x = pca_lighting(x, o.pca_lighting, *self.eigen, g)
        mean = torch.tensor(self.mean, device=dev).view(1, -1, 1, 1)
        x = random_erase(x, o.erase, tuple(o.erase_area), g, fill=mean.flatten())
        x = (x - mean) / torch.tensor(self.std, device=dev).view(1, -1, 1, 1)
        if not (o.mixup or o.cutmix):
            return x, labels
        targets = F.one_hot(labels, self.num_classes).float()
        use_cutmix = o.cutmix and (not o.mixup or torch.rand(1, generator=g, device=dev).item() < 0.5)
        if use_cutmix:
            return cutmix(x, targets, o.cutmix, g)
        return mixup(x, targets, o.mixup, g)
