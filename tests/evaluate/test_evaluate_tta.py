"""tta_views against hand-cut crops; one forward pass per batch; averaged probabilities."""

import pytest
import torch
from torch import nn

from cnnlab.data import InMemoryDataset
from cnnlab.data.loader import normalize
from cnnlab.errors import ConfigError, ShapeError
from cnnlab.evaluate import evaluate_model, tta_views
from cnnlab.evaluate.tta import predict_view_logits


def _images(n=2, c=2, h=7, w=9):
    # every pixel distinct, and not symmetric in either axis
    return torch.arange(n * c * h * w, dtype=torch.float32).view(n, c, h, w) ** 1.5


def test_10crop_is_the_ten_views_in_order():
    x = _images(h=7, w=9)
    views = tta_views(x, "10crop", 5)
    assert views.shape == (10, 2, 2, 5, 5)
    # hand-cut: corners of a 7x9 image and the centre (top (7-5)//2 = 1, left (9-5)//2 = 2)
    crops = [x[:, :, 0:5, 0:5], x[:, :, 0:5, 4:9], x[:, :, 2:7, 0:5], x[:, :, 2:7, 4:9],
             x[:, :, 1:6, 2:7]]
    mirrors = [torch.flip(c, dims=[3]) for c in crops]  # width is axis 3 of NCHW
    for i, expected in enumerate(crops + mirrors):
        assert torch.equal(views[i], expected), f"view {i}"
    # the classic bug: flipping height instead of width
    assert not torch.equal(views[5], torch.flip(crops[0], dims=[2]))
    # all ten views are different
    assert len({tuple(v.flatten().tolist()) for v in views}) == 10


@pytest.mark.parametrize("mode, count", [("none", 1), ("flip", 2), ("center", 1), ("5crop", 5),
                                         ("10crop", 10)])
def test_view_counts_and_first_views(mode, count):
    x = _images(h=8, w=8)
    views = tta_views(x, mode, 6)
    size = 8 if mode in ("none", "flip") else 6
    assert views.shape == (count, 2, 2, size, size)
    if mode == "flip":
        assert torch.equal(views[1], x[..., torch.arange(7, -1, -1)])


def test_same_size_images_are_padded_then_cropped():
    x = torch.randint(1, 255, (3, 1, 28, 28), dtype=torch.uint8)
    views = tta_views(x, "10crop", 28, margin=2)
    assert views.shape == (10, 3, 1, 28, 28)
    assert torch.equal(views[4], x)  # the centre view is the image itself
    padded = torch.zeros(3, 1, 32, 32, dtype=torch.uint8)
    padded[..., 2:30, 2:30] = x
    assert torch.equal(views[0], padded[..., :28, :28])  # top-left: image shifted down-right
    assert torch.equal(views[3], padded[..., 4:, 4:])  # bottom-right
    assert torch.equal(views[9], x.flip(-1))  # mirrored centre
    assert (views[0][..., :2, :] == 0).all() and (views[0][..., :, :2] == 0).all()


def test_bad_mode_and_small_images_are_refused():
    with pytest.raises(ConfigError, match="unknown TTA mode"):
        tta_views(_images(), "12crop", 5)
    with pytest.raises(ShapeError, match="smaller than the crop size"):
        tta_views(_images(h=4, w=4), "5crop", 5)


class _Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls, self.batch_sizes = 0, []
        self.fc = nn.Linear(16, 3)
        torch.nn.init.normal_(self.fc.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        self.calls += 1
        self.batch_sizes.append(len(x))
        return self.fc(x.flatten(1))


def test_all_views_of_a_batch_go_through_one_forward_and_probabilities_average():
    images = torch.randint(0, 255, (6, 1, 4, 4), dtype=torch.uint8)
    ds = InMemoryDataset(images, torch.tensor([0, 1, 2, 0, 1, 2]), ("a", "b", "c"), "t", (0.5,), (0.2,))
    model = _Counting()
    logits = predict_view_logits(model, ds, "10crop", 4, batch_size=60)
    assert model.calls == 1 and model.batch_sizes == [60]  # 10 views x 6 images in one pass
    assert logits.shape == (10, 6, 3)
    # oracle: each view separately through the model, softmax, then the mean over views
    views = tta_views(images, "10crop", 4)
    with torch.no_grad():
        per_view = torch.stack([model.fc(normalize(v, (0.5,), (0.2,)).flatten(1)) for v in views])
    expected = per_view.softmax(-1).mean(0)
    result = evaluate_model(model, ds, batch_size=60, tta="10crop", crop_size=4)
    torch.testing.assert_close(result.probs, expected)
    assert result.accuracy == (expected.argmax(1) == ds.labels).float().mean().item()
    nll = -expected[torch.arange(6), ds.labels].log().mean().item()
    assert result.loss == pytest.approx(nll, rel=1e-5)


def test_flip_is_one_definition_everywhere():
    """Mode flip, FlipTTA and training's tta_flip all mean: average the two views' probabilities."""
    from cnnlab.evaluate import FlipTTA, predict

    images = torch.randint(0, 255, (5, 1, 4, 4), dtype=torch.uint8)
    ds = InMemoryDataset(images, torch.tensor([0, 1, 2, 0, 1]), ("a", "b", "c"), "t", (0.5,), (0.2,))
    model = _Counting()
    x = normalize(images, (0.5,), (0.2,))
    with torch.no_grad():  # oracle: by hand, from the model's two outputs
        expected = 0.5 * (model.fc(x.flatten(1)).softmax(1) + model.fc(x.flip(-1).flatten(1)).softmax(1))
        torch.testing.assert_close(FlipTTA(model)(x).softmax(1), expected)
    torch.testing.assert_close(predict(model, ds, "flip").softmax(-1).mean(0), expected)
    torch.testing.assert_close(evaluate_model(model, ds, tta="flip").probs, expected)


def test_flip_shift_views_are_airbench_mirror_and_one_pixel_shifts():
    x = torch.randint(0, 255, (2, 1, 5, 6), dtype=torch.uint8)
    views = tta_views(x, "flip_shift", 5)
    assert views.shape == (6, 2, 1, 5, 6) and views.dtype == torch.uint8
    # oracle: shifts written out pixel by pixel, reflection at the border
    down_right = torch.empty_like(x)
    up_left = torch.empty_like(x)
    for i in range(5):
        for j in range(6):
            src_i, src_j = abs(i - 1), abs(j - 1)  # moved down-right: reflect row/col -1 -> 1
            down_right[..., i, j] = x[..., src_i, src_j]
            src_i, src_j = min(i + 1, 8 - (i + 1)), min(j + 1, 10 - (j + 1))  # reflect 5 -> 3
            up_left[..., i, j] = x[..., src_i, src_j]
    for got, want in zip(views, [x, x.flip(-1), down_right, down_right.flip(-1), up_left,
                                 up_left.flip(-1)]):
        assert torch.equal(got, want)


def test_flip_shift_prediction_is_the_weighted_mean_of_probabilities():
    images = torch.randint(0, 255, (5, 1, 4, 4), dtype=torch.uint8)
    ds = InMemoryDataset(images, torch.tensor([0, 1, 2, 0, 1]), ("a", "b", "c"), "t", (0.5,), (0.2,))
    model = _Counting()
    views = tta_views(images, "flip_shift", 4)
    with torch.no_grad():
        probs = [model.fc(normalize(v, (0.5,), (0.2,)).flatten(1)).softmax(1) for v in views]
    expected = (probs[0] + probs[1]) / 4 + (probs[2] + probs[3] + probs[4] + probs[5]) / 8
    result = evaluate_model(model, ds, batch_size=60, tta="flip_shift")
    torch.testing.assert_close(result.probs, expected)
    nll = -expected[torch.arange(5), ds.labels].log().mean().item()
    assert result.loss == pytest.approx(nll, rel=1e-5)
    from cnnlab.evaluate.ensemble import ensemble_evaluate  # the same rule in an ensemble

    torch.testing.assert_close(ensemble_evaluate([model], [ds], tta="flip_shift").ensemble.probs,
                               expected)
