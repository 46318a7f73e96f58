"""The one reader of each run file, the weights-fit check, the device and torchrun rules and the
file-system boundary, tested as functions (the campaign rows test them through the CLI)."""

from __future__ import annotations

import errno
import gzip
import os
import pickle
import zlib

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cnnlab.cli import file_system_error, main
from cnnlab.data import read_idx, write_idx
from cnnlab.device import resolve_device
from cnnlab.errors import ConfigError, DataError
from cnnlab.models import create_model, list_models
from cnnlab.models.loading import load_checked, read_safetensors, read_torch_file
from cnnlab.models.registry import _entry, check_model_options, model_options
from cnnlab.train.checkpoint import load_state
from cnnlab.train.config import RunConfig
from cnnlab.train.distributed import check_world
from cnnlab.transfer.cache import load_features


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_line(err: Exception, *words: str) -> str:
    text = str(err)
    assert "\n" not in text, text
    for word in words:
        assert word in text, (word, text)
    return text


# ---- model.safetensors ---------------------------------------------------------------------------

def test_read_safetensors_round_trip_and_refusals(tmp_path):
    state = {"a": torch.arange(6.0).view(2, 3), "b": torch.ones(4, dtype=torch.int64)}
    good = tmp_path / "good.safetensors"
    save_file(state, str(good))
    back = read_safetensors(good)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)

    data = good.read_bytes()
    marker = tmp_path / "PWNED"
    cases = {"empty": b"", "truncated": data[: len(data) // 2], "garbage": bytes(range(256)) * 8,
             "pickle": pickle.dumps({"a": _Evil(marker)})}
    for name, content in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(content)
        with pytest.raises(DataError) as err:
            read_safetensors(path, fix="do this")
        _one_line(err.value, str(path), "do this",
                  "empty (0 bytes)" if name == "empty" else "not a valid safetensors file")
    assert not marker.exists()


# ---- state.pt and .pth ---------------------------------------------------------------------------

def test_read_torch_file_never_unpickles_objects(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    torch.save({"w": _Evil(marker)}, evil)
    with pytest.raises(DataError) as err:
        read_torch_file(evil, "weights", "fix it")
    text = _one_line(err.value, str(evil), "never unpickles", "posix.system", "fix it")
    assert "weights_only" not in text
    assert not marker.exists()

    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello\n")
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(3)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:100])
    for bad in (text_file, cut):
        with pytest.raises(DataError) as err:
            read_torch_file(bad, "weights")
        _one_line(err.value, str(bad), "not a weights file torch can read")
    assert torch.equal(read_torch_file(good)["w"], torch.ones(3))


def test_load_state_names_the_missing_keys(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"epoch": 1, "model": {}}, path)
    with pytest.raises(DataError) as err:
        load_state(path)
    text = _one_line(err.value, str(path), "'step'", "'optimizer'", "'scheduler'", "--overwrite")
    assert "'model'" not in text.split("lacks")[1].split(":")[0]


# ---- weights that do not fit ----------------------------------------------------------------------

def test_load_checked_summarises_the_first_mismatch_and_counts():
    model = create_model("lenet5", num_classes=10)
    other = create_model("lenet5", num_classes=5).state_dict()
    own = model.state_dict()
    differ = [k for k in own if own[k].shape != other[k].shape]  # the oracle: compare shapes here
    with pytest.raises(ConfigError) as err:
        load_checked(model, other, "these weights", fix="rebuild it")
    _one_line(err.value, f"{differ[0]!r}", f"{tuple(other[differ[0]].shape)}",
              f"{tuple(own[differ[0]].shape)}", f"{len(differ)} of {len(own)} tensors",
              "rebuild it")

    partial = dict(list(other.items())[:-3])
    partial["extra.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError) as err:
        load_checked(create_model("lenet5", num_classes=5), partial)
    _one_line(err.value, "3 missing", "1 unexpected (first 'extra.weight')")

    fitting = create_model("lenet5", num_classes=5)
    load_checked(fitting, other)
    assert all(torch.equal(fitting.state_dict()[k], other[k]) for k in other)


# ---- the feature cache ---------------------------------------------------------------------------

def test_load_features_checks_the_header_before_mapping(tmp_path):
    array = np.arange(24, dtype=np.float32).reshape(1, 4, 6)
    good = tmp_path / "good.npy"
    np.save(good, array)
    assert torch.equal(load_features(good), torch.from_numpy(array))

    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-8])
    wide = tmp_path / "wide.npy"
    np.save(wide, array.astype(np.float64))
    marker = tmp_path / "PWNED"
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([_Evil(marker)], dtype=object), allow_pickle=True)
    text = tmp_path / "text.npy"
    text.write_text("not numpy")
    for bad, word in ((cut, "truncated"), (wide, "float64"), (objects, "object"),
                      (text, "not a NumPy array file")):
        with pytest.raises(DataError) as err:
            load_features(bad)
        _one_line(err.value, str(bad), word, "delete it")
    assert not marker.exists()


# ---- IDX: a corrupt deflate stream ----------------------------------------------------------------

def test_read_idx_refuses_corrupt_deflate(tmp_path):
    path = tmp_path / "images-idx3-ubyte.gz"
    write_idx(path, torch.randint(0, 255, (50, 28, 28), dtype=torch.uint8))
    data = bytearray(path.read_bytes())
    data[10:18] = bytes(8 * [0xFF])  # the first deflate block header, after gzip's 10 bytes
    path.write_bytes(bytes(data))
    with pytest.raises(zlib.error):  # what gzip itself raises: the error this reader must wrap
        gzip.decompress(bytes(data))
    with pytest.raises(DataError) as err:
        read_idx(path)
    _one_line(err.value, str(path), "corrupt", "fetch it again")


# ---- the file system, the device, torchrun ---------------------------------------------------------

@pytest.mark.parametrize("code, words", [
    (errno.EEXIST, ("not a folder",)), (errno.ENOTDIR, ("not a folder",)),
    (errno.EISDIR, ("is a folder",)), (errno.EROFS, ("read-only", "writable folder")),
    (errno.EACCES, ("permission denied",)), (errno.ENOSPC, ("no space left", "free some space")),
    (errno.ENOENT, ("cannot be created there", "check the path")),
])
def test_file_system_error_names_path_problem_and_fix(code, words):
    line = file_system_error(OSError(code, os.strerror(code), "out/run/.config.json.x1y2.tmp"))
    assert line.startswith("cannot use 'out/run': ") and "\n" not in line
    assert all(w in line for w in words)
    assert file_system_error(OSError(code, os.strerror(code), "out/model.pt")).startswith(
        "cannot use 'out/model.pt'")
    assert "cannot write a file" in file_system_error(OSError(code, os.strerror(code)))


def test_file_system_error_leaves_other_errors_alone():
    assert file_system_error(OSError(errno.EIO, "I/O error", "x")) is None
    assert file_system_error(OSError(errno.ECONNREFUSED, "refused")) is None


def test_resolve_device_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu" and resolve_device("cpu").type == "cpu"
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError) as err:
            resolve_device(name)
        _one_line(err.value, f"--device {name}", "no CUDA GPU here", "--device cpu or auto")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_resolve_device_counts_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="has 1 CUDA GPU"):
        resolve_device("cuda:3")


def test_every_subcommand_device_flag_is_checked_before_it_runs(monkeypatch, capsys, tmp_path):
    """The CLI resolves --device (and train's --device / --set) before any subcommand's code."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ran = []
    import cnnlab.cli.evaluate as evaluate_cli

    monkeypatch.setattr(evaluate_cli, "run", lambda args: ran.append(args) or 0)
    assert main(["evaluate", str(tmp_path), "--device", "cuda"]) == 2
    assert not ran and "no CUDA GPU here" in capsys.readouterr().err


def test_check_world():
    check_world(128, 2)
    for batch, world, words in ((3, 2, ("divisible", "--batch-size 4")), (8, 0, ("at least 1",))):
        with pytest.raises(ConfigError) as err:
            check_world(batch, world)
        _one_line(err.value, *words)


def test_check_world_needs_a_gpu_per_process(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="one GPU per process"):
        check_world(8, 2, "cuda")


# ---- model options ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list_models())
def test_model_options_are_the_constructor_parameters(name):
    """Each listed option, given its default, builds the model (or is refused in one line when the
    variant fixes it itself); a name not listed is refused naming the valid ones."""
    import inspect
    import typing

    options = model_options(name)
    cls = typing.get_type_hints(_entry(name).fn)["return"]
    defaults = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()}
    for option in options:
        try:
            with torch.device("meta"):
                create_model(name, **{option: defaults[option]})
        except ConfigError as err:
            _one_line(err, name)
    with pytest.raises(ConfigError) as err:
        check_model_options(name, {"bogus": 1})
    _one_line(err.value, "'bogus'", *options)
    with pytest.raises(ConfigError, match="model.options must map"):
        check_model_options(name, [1])


# ---- the data against the config ------------------------------------------------------------------

def _split(n: int, chans: int = 1, size: int = 28):
    from cnnlab.data import InMemoryDataset

    return InMemoryDataset(torch.zeros(n, chans, size, size, dtype=torch.uint8),
                           torch.zeros(n, dtype=torch.long), ("a", "b"), "x", (0.5,), (0.5,))


def test_check_data():
    config = RunConfig()
    config.check_data(_split(4), _split(2))
    with pytest.raises(ConfigError, match="training split of fashion-mnist has no images"):
        config.check_data(_split(0), _split(2))
    with pytest.raises(ConfigError, match="28x28 against 20x20"):
        config.check_data(_split(4), _split(2, size=20))
    config.model.in_chans = 3
    with pytest.raises(ConfigError, match="model.in_chans=3 but the images of fashion-mnist have 1 "):
        config.check_data(_split(4), _split(2))
    config.check_data(_split(4), _split(2), builds_model=False)  # a model passed in: its own


# ---- ONNX: one file, or the data file named ----------------------------------------------------

@pytest.mark.slow
def test_onnx_too_large_for_one_file_names_its_data_file(workspace, capsys, monkeypatch):
    """Above protobuf's limit (lowered here to 0 bytes) the weights go to model.onnx.data and the
    CLI says it belongs with model.onnx; the pair runs and matches PyTorch."""
    pytest.importorskip("onnxruntime")
    from cnnlab.evaluate import export

    monkeypatch.setattr(export, "ONNX_SINGLE_FILE_BYTES", 0)
    assert main(["export", "runs/base", "--format", "onnx", "--out", "exp/big.onnx"]) == 0
    out = capsys.readouterr().out
    assert (workspace / "exp/big.onnx.data").is_file()
    assert "exp/big.onnx.data" in out and "keep it beside big.onnx" in out
    monkeypatch.setattr(export, "ONNX_SINGLE_FILE_BYTES", 2**31)
    assert main(["export", "runs/base", "--format", "onnx", "--out", "exp/big.onnx"]) == 0
    assert not (workspace / "exp/big.onnx.data").exists()  # the stale data file is gone
