"""Each augmentation's defining property, checked against an independent computation."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cnnlab.data import augment as A


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(b=6, c=1, h=8, w=8, seed=0):
    return torch.rand(b, c, h, w, generator=_g(seed))


def test_flip_mirrors_the_width_axis_per_image():
    x = _images(64)
    out = A.random_flip(x, 0.5, _g())
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54  # per image, not one decision for the batch
    assert torch.equal(A.random_flip(x, 1.0, _g()), x.flip(-1))


def test_crop_with_pad_keeps_shape_and_shifts_content_by_at_most_pad():
    pad = 2
    x = torch.zeros(32, 1, 12, 12)
    x[:, :, 5, 6] = 1.0  # one bright pixel at (5, 6)
    out = A.random_crop(x, pad, _g())
    assert out.shape == x.shape
    shifts = set()
    for img in out:
        ys, xs = torch.nonzero(img[0] == 1.0, as_tuple=True)
        assert len(ys) == 1 and abs(int(ys[0]) - 5) <= pad and abs(int(xs[0]) - 6) <= pad
        shifts.add((int(ys[0]), int(xs[0])))
    assert len(shifts) > 5  # a different offset per image
    # the crop at offset (dy, dx) equals slicing the zero-padded image (independent computation)
    img = _images(1, h=6, w=6)
    out = A.random_crop(img, 1, _g(3))
    padded = torch.nn.functional.pad(img, (1, 1, 1, 1))
    windows = [padded[..., dy:dy + 6, dx:dx + 6] for dy in range(3) for dx in range(3)]
    assert any(torch.equal(out, w) for w in windows)


def test_translate_shifts_a_ramp_by_a_per_image_constant_within_the_bound():
    """Bilinear sampling reproduces a linear ramp exactly, so a pure shift of s pixels adds the
    constant s to every interior pixel; |s| <= translate * width."""
    w, t = 16, 0.1
    ramp = torch.arange(w, dtype=torch.float32).expand(8, 1, w, w).contiguous()  # value = x
    out = A.random_affine(ramp, 0.0, t, _g())
    inner = (out - ramp)[:, 0, 4:-4, 4:-4]  # away from the zero-filled border
    offsets = inner.flatten(1)
    torch.testing.assert_close(offsets, offsets[:, :1].expand_as(offsets), atol=1e-4, rtol=0)
    assert offsets.abs().max() <= t * w + 1e-4 and offsets[:, 0].std() > 0.1


def test_rotation_keeps_a_radial_image_and_moves_an_off_centre_dot():
    size = 21
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    radial = ((ys - 10.0) ** 2 + (xs - 10.0) ** 2).sqrt().expand(4, 1, size, size).contiguous()
    out = A.random_affine(radial, 30.0, 0.0, _g())
    assert (out - radial)[:, 0, 6:15, 6:15].abs().max() < 0.35  # rotation-invariant up to bilinear
    dot = torch.zeros(64, 1, size, size)
    dot[:, 0, 10, 16] = 1.0
    moved = A.random_affine(dot, 45.0, 0.0, _g())
    assert (moved[:, 0, 10, 16] < 0.99).float().mean() > 0.5


def test_random_erase_sets_one_rectangle_to_fill():
    x = torch.ones(16, 3, 10, 10)
    out = A.random_erase(x, 1.0, (0.1, 0.3), _g(), fill=torch.zeros(3))
    for img in out:
        mask = img[0] == 0
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert len(ys) > 0
        box = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        assert box.all()  # the erased pixels form a filled rectangle
        assert torch.equal(img[0] == 0, img[2] == 0)  # same box in every channel
    assert torch.equal(A.random_erase(x, 0.0, (0.1, 0.3), _g()), x)


def test_pca_lighting_adds_alpha_lambda_eigvec_with_numpy_eigen():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (20, 3, 6, 6), dtype=np.uint8))
    eigval, eigvec = A.rgb_eigen(images)
    pixels = images.numpy().transpose(1, 0, 2, 3).reshape(3, -1) / 255.0
    np_val, np_vec = np.linalg.eigh(np.cov(pixels))
    np.testing.assert_allclose(eigval.numpy(), np_val, rtol=1e-4)
    np.testing.assert_allclose(np.abs(eigvec.numpy()), np.abs(np_vec), atol=1e-4)  # sign-free
    x = torch.rand(5, 3, 4, 4, generator=_g(1))
    out = A.pca_lighting(x, 0.1, eigval, eigvec, _g(7))
    alpha = torch.randn(5, 3, generator=_g(7)) * 0.1  # the same draw
    for b in range(5):
        expected = sum(alpha[b, i] * eigval[i] * eigvec[:, i] for i in range(3))  # AlexNet Sec. 4.1
        torch.testing.assert_close(out[b] - x[b], expected.view(3, 1, 1).expand(3, 4, 4))


def test_color_jitter_saturation_zero_factor_range_and_grey_untouched():
    grey = torch.rand(4, 1, 5, 5, generator=_g())
    rgb = grey.expand(4, 3, 5, 5).contiguous()
    out = A.color_jitter(rgb, 0.0, 0.0, 0.9, _g())
    # a grey image has no saturation to change (v2's grey weights sum to 0.9999)
    torch.testing.assert_close(out, rgb, atol=2e-4, rtol=0)
    bright = A.color_jitter(torch.full((200, 1, 2, 2), 0.5), 0.4, 0.0, 0.0, _g())
    factors = bright[:, 0, 0, 0] / 0.5
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6 and factors.std() > 0.1


@pytest.mark.parametrize("fn", [A.mixup, A.cutmix])
def test_mixup_and_cutmix_mix_labels_as_they_mix_pixels(fn):
    """Image i is the constant i with label i: the mean pixel of a mixed image must equal the
    expected label under its mixed target, sum_k t_k k, and each target row must sum to 1."""
    x = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 1, 10, 10).contiguous()
    targets = torch.nn.functional.one_hot(torch.arange(8), 8).float()
    for seed in range(5):
        out, mixed = fn(x, targets, 1.0, _g(seed))
        torch.testing.assert_close(mixed.sum(1), torch.ones(8))
        assert (mixed >= 0).all() and out.shape == x.shape
        torch.testing.assert_close(out.mean(dim=(1, 2, 3)), mixed @ torch.arange(8.0))


def test_same_seed_same_batch_other_seed_other_batch():
    options = SimpleNamespace(crop_pad=2, pad_mode="zeros", flip=0.5, rotate=10, translate=0.1,
                              scale=0.2, brightness=0.2, contrast=0.2, saturation=0.2, pca_lighting=0.1,
                              erase=0.5, erase_area=[0.02, 0.2], mixup=0.2, cutmix=1.0)
    images = torch.randint(0, 256, (8, 3, 12, 12), generator=_g(), dtype=torch.uint8)
    labels = torch.arange(8) % 3
    eigen = A.rgb_eigen(images)
    aug = A.Augmenter(options, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 3, eigen)
    a, ta = aug(images, labels, _g(1))
    b, tb = aug(images, labels, _g(1))
    c, _ = aug(images, labels, _g(2))
    assert torch.equal(a, b) and torch.equal(ta, tb) and not torch.equal(a, c)
    torch.testing.assert_close(ta.sum(1), torch.ones(8))


@pytest.mark.parametrize("degrees, scale", [(30.0, 1.0), (0.0, 1.3), (-45.0, 0.7), (90.0, 0.5)])
def test_affine_matches_torchvision_per_image(degrees, scale):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    x = _images(3, 2, 20, 20)
    out = A.affine(x, degrees, scale)
    for b in range(3):
        oracle = TF.affine(x[b], angle=degrees, translate=[0, 0], scale=scale, shear=[0.0, 0.0],
                           interpolation=InterpolationMode.BILINEAR)
        torch.testing.assert_close(out[b], oracle, atol=1e-5, rtol=0)


def test_random_scale_draws_one_factor_per_image_in_its_interval():
    x, s = _images(8, 1, 24, 24), 0.4
    out = A.random_affine(x, 0.0, 0.0, _g(5), scale=s)
    g = _g(5)
    torch.rand(8, generator=g), torch.rand(16, generator=g)  # the angle and shift draws (zero here)
    factors = 1 - s + 2 * s * torch.rand(8, generator=g)
    assert ((factors >= 1 - s) & (factors <= 1 + s)).all() and factors.std() > 0.1
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    for b in range(8):
        oracle = TF.affine(x[b], angle=0.0, translate=[0, 0], scale=factors[b].item(),
                           shear=[0.0, 0.0], interpolation=InterpolationMode.BILINEAR)
        torch.testing.assert_close(out[b], oracle, atol=1e-5, rtol=0)
    # off by default: rotation and translation sample exactly as before scale existed
    g = _g(2)
    angle = (-20 + 40 * torch.rand(8, generator=g)) * (np.pi / 180)
    shift = (-0.1 + 0.2 * torch.rand(16, generator=g)).view(8, 2) * 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    before = torch.nn.functional.grid_sample(x, grid, align_corners=False)
    torch.testing.assert_close(A.random_affine(x, 20.0, 0.1, _g(2)), before, atol=1e-6, rtol=0)


def test_alternate_flip_switches_each_image_every_epoch_from_a_random_start():
    x = _images(64)
    index = torch.arange(100, 164)
    states = []
    for epoch in (1, 2, 3, 4):
        out = A.alternate_flip(x, 0.5, index, epoch, seed=3)
        flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
        kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
        assert bool((flipped | kept).all())
        states.append(flipped)
    assert bool((states[0] ^ states[1]).all()) and bool((states[1] ^ states[2]).all())
    assert torch.equal(states[0], states[2]) and torch.equal(states[1], states[3])
    assert 10 < int(states[0].sum()) < 54  # the start is drawn per image
    # the start is a function of (seed, index): the same image, the same state, in any batch
    again = A.alternate_flip(x[5:9], 0.5, index[5:9], 1, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(again, A.alternate_flip(x, 0.5, index, 1, 3)[5:9]))
    other_seed = A.alternate_flip(x, 0.5, index, 1, seed=4)
    assert not torch.equal(other_seed, A.alternate_flip(x, 0.5, index, 1, seed=3))


def test_augmenter_alternate_mode_gets_indices_from_the_loader():
    from cnnlab.data import InMemoryDataset
    from cnnlab.data.loader import InMemoryLoader
    from cnnlab.train.config import AugmentConfig

    images = torch.randint(0, 255, (16, 1, 4, 5), dtype=torch.uint8)
    ds = InMemoryDataset(images, torch.zeros(16, dtype=torch.long), ("a",), "t", (0.0,), (1 / 255,))
    options = AugmentConfig(flip=0.5, flip_mode="alternate")
    aug = A.Augmenter(options, ds.mean, ds.std, 1, seed=0)
    loader = InMemoryLoader(ds, 4, shuffle=True, transform=aug, seed=0, prefetch=0)
    seen = {}
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        order = loader._order()
        for step, (batch, _) in enumerate(loader):
            for k, image in zip(order[step * 4:(step + 1) * 4].tolist(), batch):
                raw = images[k].float()
                mirrored = torch.allclose(image, raw.flip(-1), atol=1e-3)
                assert mirrored or torch.allclose(image, raw, atol=1e-3)
                seen.setdefault(k, []).append(mirrored)
    assert all(states[0] != states[1] for states in seen.values()) and len(seen) == 16
