"""Image folders: decoded by torchvision.io in DataLoader workers, resized, held in memory."""

import pytest
import torch
from torchvision.io import encode_png, write_file

from cnnlab.data import load_dataset
from cnnlab.errors import ConfigError, DataError


def _write(root, split, cls, index, colour, size=(3, 20, 30)):
    folder = root / split / cls
    folder.mkdir(parents=True, exist_ok=True)
    image = torch.zeros(size, dtype=torch.uint8)
    image[:] = torch.tensor(colour, dtype=torch.uint8).view(-1, 1, 1)
    write_file(str(folder / f"{index}.png"), encode_png(image))


def test_image_folder_loads_classes_sizes_and_pixels(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            _write(tmp_path, split, "cat", i, (200, 10, 10))
            _write(tmp_path, split, "dog", i, (10, 10, 200))
    train = load_dataset("imagefolder", "train", tmp_path, image_size=16, workers=0)
    test = load_dataset("imagefolder", "test", tmp_path, image_size=16, workers=1)
    assert train.classes == ("cat", "dog") and len(train) == 6 and len(test) == 4
    assert train.images.shape == (6, 3, 16, 16) and train.images.dtype == torch.uint8
    cats = train.images[train.labels == 0]
    assert (cats[:, 0] == 200).all() and (cats[:, 2] == 10).all()  # RGB order preserved
    # mean of the training split: half red-200 images, half blue-200 images
    assert train.mean[0] == pytest.approx((200 + 10) / 2 / 255, abs=1e-4)
    assert test.mean == train.mean


def test_grey_images_become_rgb_and_errors_are_clear(tmp_path):
    for cls, grey in (("a", 77), ("b", 150)):
        _write(tmp_path, "train", cls, 0, (grey,), size=(1, 10, 10))
        _write(tmp_path, "test", cls, 0, (grey,), size=(1, 10, 10))
    ds = load_dataset("imagefolder", "train", tmp_path, image_size=8, workers=0)
    assert ds.images.shape == (2, 3, 8, 8) and (ds.images[0] == 77).all() and (ds.images[1] == 150).all()
    with pytest.raises(DataError, match="no train/ folder"):
        load_dataset("imagefolder", "train", tmp_path / "nothing", workers=0)
    with pytest.raises(ConfigError, match="needs --data-dir"):
        load_dataset("imagefolder", "train", None)
