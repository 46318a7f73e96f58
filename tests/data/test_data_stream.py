"""Image folders: the one decoder, the hold-out split, bad files, the in-memory decision, and
streaming (its transforms against torchvision's v2 computed here, its shards, its resume)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from cnnlab.data import load_dataset
from cnnlab.data.datasets import InMemoryDataset
from cnnlab.data.imagefolder import list_folder
from cnnlab.data.images import decode_image_file
from cnnlab.data.loader import InMemoryLoader
from cnnlab.data.stream import FileImageDataset, eval_resize, sample_seeds
from cnnlab.errors import DataError


def noise_folder(root, classes=("a", "b", "c"), per_class=(6, 2), sizes=((40, 30), (25, 36))):
    """Random-noise PNGs (every image different) of a few sizes, tinted by class."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "test"), per_class):
        for c, name in enumerate(classes):
            for i in range(n):
                w, h = sizes[i % len(sizes)]
                pixels = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
                pixels[..., c] += 120
                path = root / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path)
    return root


def _pil_rgb(path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1).copy())


@pytest.mark.parametrize("mode,suffix", [("L", ".png"), ("LA", ".png"), ("P", ".png"),
                                         ("RGBA", ".png"), ("CMYK", ".jpg"), ("RGB", ".jpg"),
                                         ("RGB", ".bmp"), ("RGB", ".gif"), ("RGB", ".webp")])
def test_every_mode_decodes_to_what_pil_sees(tmp_path, mode, suffix):
    rng = np.random.default_rng(1)
    path = tmp_path / f"x{suffix}"
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).convert(mode).save(path)
    rgb = decode_image_file(path, 3)
    assert rgb.dtype == torch.uint8 and rgb.shape == (3, 12, 10)
    assert torch.equal(rgb, _pil_rgb(path))
    grey = decode_image_file(path, 1)  # ITU-R 601 luma: PIL's "L" within rounding
    with Image.open(path) as image:
        if suffix == ".jpg" and mode != "CMYK":
            image.draft("L", image.size)  # a JPEG's grey is its decoded Y channel, as libjpeg's
        oracle = torch.from_numpy(np.asarray(image.convert("L")).copy())
    assert grey.shape == (1, 12, 10) and (grey[0].int() - oracle.int()).abs().max() <= 1


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_images_are_scaled_to_0_255(tmp_path, suffix):
    values = np.random.default_rng(2).integers(0, 65536, (7, 9)).astype(np.uint16)
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(values).save(path)
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    got = decode_image_file(path, 1)
    assert got.dtype == torch.uint8 and torch.equal(got[0], torch.from_numpy(expected))


def test_undecodable_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello\n")
    with pytest.raises(DataError) as err:
        decode_image_file(path)
    assert "notes.png" in str(err.value) and "\n" not in str(err.value)
    assert ".cpp" not in str(err.value)  # no decoder source paths


def test_val_fraction_is_a_seeded_stratified_hold_out(tmp_path):
    for name, n in (("a", 10), ("b", 20), ("c", 3)):
        for i in range(n):
            path = tmp_path / "train" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4)).save(path)
    train, train_labels, classes = list_folder(tmp_path, "train", 0.2, split_seed=0)
    test, test_labels, _ = list_folder(tmp_path, "test", 0.2, split_seed=0)
    assert classes == ("a", "b", "c")
    assert not set(train) & set(test) and len(train) + len(test) == 33  # a partition
    assert torch.bincount(test_labels).tolist() == [2, 4, 1]  # round(n * 0.2), at least 1 a class
    assert torch.bincount(train_labels).tolist() == [8, 16, 2]
    again, _, _ = list_folder(tmp_path, "test", 0.2, split_seed=0)
    other, _, _ = list_folder(tmp_path, "test", 0.2, split_seed=1)
    assert again == test and other != test


def test_bad_images_error_names_the_file_and_skip_counts(tmp_path):
    noise_folder(tmp_path)
    (tmp_path / "train" / "b" / "junk.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"junk\.png.*data\.bad_images=skip"):
        load_dataset("imagefolder", "train", tmp_path, image_size=8, workers=0)
    lines = []
    ds = load_dataset("imagefolder", "train", tmp_path, image_size=8, workers=0,
                      bad_images="skip", log=lines.append)
    assert len(ds) == 18 and any("left out 1 of 19" in line and "junk.png" in line for line in lines)


def test_auto_streams_when_the_split_exceeds_the_budget(tmp_path):
    noise_folder(tmp_path)
    lines = []
    small = load_dataset("imagefolder", "train", tmp_path, image_size=8, workers=0, log=lines.append)
    assert isinstance(small, InMemoryDataset) and "in memory" in lines[-1]
    budget = 18 * 3 * 8 * 8 / 1e9  # exactly the decoded train split: still fits
    assert isinstance(load_dataset("imagefolder", "train", tmp_path, image_size=8, workers=0,
                                   memory_budget_gb=budget), InMemoryDataset)
    streamed = load_dataset("imagefolder", "train", tmp_path, image_size=8, workers=0,
                            memory_budget_gb=budget * 0.99, log=lines.append)
    assert isinstance(streamed, FileImageDataset) and "exceeds" in lines[-1] and "streaming" in lines[-1]
    assert torch.equal(streamed.labels, small.labels) and streamed.classes == small.classes


def test_streamed_evaluation_images_are_resize_then_centre_crop(tmp_path):
    noise_folder(tmp_path)
    ds = load_dataset("imagefolder", "test", tmp_path, image_size=16, workers=2, in_memory="false")
    next(ds.stream([torch.tensor([4]), torch.tensor([3]), torch.tensor([2])]))  # a pass left
    # unfinished (the persistent workers hold its other batches): the next pass starts afresh
    batches = list(ds.stream([torch.tensor([0, 1, 2]), torch.tensor([5])]))
    oracle = v2.Compose([v2.Resize(eval_resize(16), antialias=True), v2.CenterCrop(16)])
    for got, index in zip(torch.cat(batches), [0, 1, 2, 5]):
        assert torch.equal(got, oracle(_pil_rgb(ds.files[index])))
    # mean/std from the decoded training images (all 18 < the 512 sampled)
    train = load_dataset("imagefolder", "train", tmp_path, image_size=16, workers=0, in_memory="false")
    pixels = torch.stack([oracle(_pil_rgb(f)) for f in train.files]).float() / 255
    assert ds.mean == pytest.approx(pixels.mean(dim=(0, 2, 3)).tolist(), abs=1e-6)
    assert ds.std == pytest.approx(pixels.std(dim=(0, 2, 3)).tolist(), abs=1e-6)
    in_memory = load_dataset("imagefolder", "test", tmp_path, image_size=16, workers=0,
                             in_memory="true")  # all of train/, resized to 16 and centre-cropped
    resized = v2.Compose([v2.Resize(16, antialias=True), v2.CenterCrop(16)])
    pixels = torch.stack([resized(_pil_rgb(f)) for f in train.files]).float() / 255
    assert in_memory.std == pytest.approx(pixels.std(dim=(0, 2, 3)).tolist(), abs=1e-6)


def test_training_transform_is_seeded_per_image_whatever_the_worker(tmp_path):
    noise_folder(tmp_path)
    kwargs = dict(image_size=12, in_memory="false")
    one = load_dataset("imagefolder", "train", tmp_path, workers=0, **kwargs)
    two = load_dataset("imagefolder", "train", tmp_path, workers=2, **kwargs)
    index = [torch.tensor([3, 0, 7]), torch.tensor([11, 2])]
    seeds = [sample_seeds(5, 2, i) for i in index]
    a, b = torch.cat(list(one.stream(index, seeds))), torch.cat(list(two.stream(index, seeds)))
    assert torch.equal(a, b)
    crop_flip = v2.Compose([v2.RandomResizedCrop(12, antialias=True), v2.RandomHorizontalFlip()])
    for got, i, seed in zip(a, torch.cat(index).tolist(), [s for part in seeds for s in part]):
        torch.manual_seed(seed)
        assert torch.equal(got, crop_flip(_pil_rgb(one.files[i])))
    other = torch.cat(list(one.stream(index, [sample_seeds(5, 3, i) for i in index])))
    assert not torch.equal(a, other)  # another epoch, other crops


def test_loader_shards_a_streamed_split_like_in_memory_data(tmp_path):
    noise_folder(tmp_path)
    ds = load_dataset("imagefolder", "train", tmp_path, image_size=8, workers=0, in_memory="false")
    full = InMemoryLoader(ds, 6, shuffle=True, seed=3, prefetch=0)
    halves = [InMemoryLoader(ds, 6, shuffle=True, seed=3, prefetch=0, rank=r, world_size=2)
              for r in (0, 1)]
    for loader in (full, *halves):
        loader.set_epoch(1)
    for whole, part0, part1 in zip(full, *halves, strict=True):
        assert torch.equal(whole[1][0::2], part0[1]) and torch.equal(whole[1][1::2], part1[1])
        assert torch.equal(whole[0][0::2], part0[0]) and torch.equal(whole[0][1::2], part1[0])
    resumed = InMemoryLoader(ds, 6, shuffle=True, seed=3, prefetch=0)
    resumed.set_epoch(1, start_step=2)
    last = list(full)[2]  # a fresh pass of epoch 1 (set_epoch persists)
    assert torch.equal(next(iter(resumed))[0], last[0])


@pytest.mark.parametrize("workers", [0, 2])
def test_a_file_that_fails_in_a_worker_is_one_line_naming_it(tmp_path, workers):
    """The header scan passes a JPEG cut short; its decode fails in a DataLoader worker, whose
    error PyTorch re-raises with the worker's traceback: cnnlab gives the worker's one line."""
    noise_folder(tmp_path)
    noise = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    path = tmp_path / "train" / "b" / "cut.jpg"
    Image.fromarray(noise).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataError) as err:  # the scan passes it; decoding the stats sample fails
        load_dataset("imagefolder", "train", tmp_path, image_size=8, workers=workers,
                     in_memory="false")
    message = str(err.value)
    assert message.startswith("cannot read") and "cut.jpg" in message and "\n" not in message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_streaming_fixes_the_heap_threshold_on_glibc():
    """glibc accepts the fixed mmap threshold that keeps a streamed epoch's freed batch buffers
    from piling up on the heap (bench_image_pipeline.py measures the resident memory)."""
    from cnnlab.data.stream import bound_heap_growth

    assert bound_heap_growth() is True
