"""README.md and docs/*.md, followed as a reader would: every fenced command and Python snippet runs,
and where a page shows output the run's output is compared with it.

Each page runs in order, in one fresh folder: runs written by one step are there for the next,
shell variables (``D=...``) carry on, ``.venv`` points at this interpreter's environment. The data
are shrunk: ``CNNLAB_DATA`` holds a Fashion-MNIST of 600 training and 100 test images (the real
set's first images where it is on disk, else synthetic bars), there is no network, and the user
cache is empty. Commands run in-process through :func:`cnnlab.cli.main`.

A page steers its test with an HTML comment just before a block (invisible on the page), holding a
YAML mapping::

    <!-- test: {args: {train: --epochs 2}, skip: {--nproc: "why it is not run"}} -->

* ``args``: options per subcommand (``train``, or ``lab data-scaling``: the command's first words),
  replacing an option the command has (``--set KEY=`` by key) or added — the small settings of a
  slow command;
* ``skip``: a reason (the whole block is not run), or ``{substring: reason}`` per command;
* ``output: true``: the block is the output of the previous block (``output: next``: of the
  next one), compared with what it prints;
* ``setup``: commands run first, in the test only: what an earlier page left in the reader's
  folder (``make demo``'s run);
* ``file: NAME``: the block is a file the page's later steps read (written, after ``replace``);
* ``replace``: ``{old: new}`` text replacements in a Python block before it runs.

Output: lines starting ``...`` match any lines; whitespace runs compare as one space. Always masked
(they depend on the machine): times, images/s, ms/image and ms/step, the feature cache's folder.
Every number is masked in the output of commands whose numbers depend on the shrunken data or on
the machine (training, evaluation, reports, the lab); ``cnnlab models``, ``summary`` and pretrained
predictions compare to the digit.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from cnnlab.cli import main
from cnnlab.data import datasets as ds
from cnnlab.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^\s*<!--\s*test:(.*?)-->\s*$", re.S)
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
SHELL_LANGS = {"bash", "sh", "shell", "console"}
EXACT_COMMANDS = {"models", "summary"}  # their numbers are the models', not the data's
# Machine-dependent, in every output: (pattern, replacement).
MACHINE = [
    (re.compile(r"[\d,.]+ (img/s|ms/image|ms/step|images/s)"), r"# \1"),
    (re.compile(r"\b\d+(\.\d+)?s\b"), "#s"),
    (re.compile(r"\S*/cnnlab/features/\S*?-[0-9a-f]{20}\.npy"), "<cache>/<key>.npy"),
    (re.compile(r"\(\d[\d,.]* kB"), "(# kB"),
]
# Lines whose presence depends on the CPU (the bf16 timings of precision `auto`).
MACHINE_LINES = re.compile(r"\s*(precision auto:|feature cache precision auto:)")
NUMBER = re.compile(r"\d[\d,]*(\.\d+)?(e[+-]?\d+)?")


@dataclass
class Block:
    page: str
    line: int  # 1-based, where the block's text starts
    kind: str  # python, shell, session ($-prompted commands with their output), text
    text: str
    marker: dict = field(default_factory=dict)


def parse_blocks(page: str) -> list[Block]:
    """The fenced blocks and ``$``-prompted indented blocks of a page, each with its marker."""
    lines = (ROOT / page).read_text().splitlines()
    blocks, marker, i = [], {}, 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("<!--"):
            end = i
            while "-->" not in lines[end]:
                end += 1
            match = MARKER.match("\n".join(lines[i:end + 1]))
            if match:
                marker = yaml.safe_load(match.group(1)) or {}
            i = end + 1
            continue
        fence = FENCE.match(line)
        if fence:
            indent, lang, end = len(fence.group(1)), fence.group(2), i + 1
            while not FENCE.match(lines[end]):
                end += 1
            body = "\n".join(x[indent:] for x in lines[i + 1:end])
            kind = ("python" if lang == "python" else "shell" if lang in SHELL_LANGS
                    else "text" if lang else _guess(body))
            blocks.append(Block(page, i + 2, kind, body, marker))
            marker, i = {}, end + 1
            continue
        stripped = line.lstrip()
        prev_blank = i == 0 or not lines[i - 1].strip() or lines[i - 1].lstrip().startswith("<!--")
        if stripped.startswith("$ ") and len(line) - len(stripped) >= 4 and prev_blank:
            indent, end = len(line) - len(stripped), i
            while end < len(lines) and (not lines[end].strip() or lines[end][:indent].isspace()):
                end += 1
            while not lines[end - 1].strip():
                end -= 1
            blocks.append(Block(page, i + 1, "session", "\n".join(x[indent:] for x in lines[i:end]),
                                marker))
            marker, i = {}, end
            continue
        if line.strip():  # a marker steers the next block only
            marker = {}
        i += 1
    return blocks


def _guess(body: str) -> str:
    first = next((x for x in body.splitlines() if x.strip() and not x.startswith("#")), "")
    return "shell" if first.split(" ")[0] in {"cnnlab", "torchrun", "make"} else "text"


def commands(text: str, prompted: bool) -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` of a block: ``\\``-continued lines joined; in a prompted
    block the lines after a ``$ `` command, up to the next, are its output."""
    result, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if prompted and not line.startswith("$ "):
            result[-1][1].append(line)
            i += 1
            continue
        command = line[2:] if prompted else line
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + " " + lines[i].strip()
        if command.strip() and not command.lstrip().startswith("#"):
            result.append((command.strip(), []))
        i += 1
    return result


def with_options(argv: list[str], options: str) -> list[str]:
    """``argv`` with each option of ``options`` replacing the same option (``--set KEY=`` by key),
    or added before the end."""
    argv, extra = list(argv), shlex.split(options)
    j = 0
    while j < len(extra):
        flag = extra[j]
        value = extra[j + 1] if j + 1 < len(extra) and not extra[j + 1].startswith("--") else None
        j += 2 if value is not None else 1
        spots = [k for k, a in enumerate(argv) if a == flag and (
            flag != "--set" or argv[k + 1].split("=")[0] == value.split("=")[0])]
        if spots and value is not None:
            argv[spots[0] + 1] = value
        elif not spots:
            argv += [flag] + ([value] if value is not None else [])
    return argv


def normalize(lines: list[str], numbers: bool) -> list[str]:
    """Machine-dependent parts masked (and every number with ``numbers``; then ``# epochs`` and
    ``# epoch`` read the same), whitespace runs as one space, lines only some machines print
    dropped."""
    out = []
    for line in lines:
        if MACHINE_LINES.match(line):
            continue
        for pattern, new in MACHINE:
            line = pattern.sub(new, line)
        if numbers:
            line = re.sub(r"# (\w+?)s\b", r"# \1", NUMBER.sub("#", line))
        out.append(" ".join(line.split()))
    return out


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; an expected line starting ``...`` stands for any lines (none included)."""
    if not expected:
        return not actual
    if expected[0].startswith("..."):
        return any(matches(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


class Session:
    """One page followed in one folder: its shell variables and the marker in force."""

    def __init__(self, folder: Path, monkeypatch) -> None:
        self.folder, self.monkeypatch, self.variables = folder, monkeypatch, {}

    def expand(self, word: str) -> str:
        return re.sub(r"\$(\w+)|\$\{(\w+)\}",
                      lambda m: self.variables.get(m.group(1) or m.group(2), m.group(0)), word)

    def run(self, command: str, marker: dict) -> tuple[int, list[str], bool]:
        """Run one shell line; returns (status, output lines, whether its numbers are exact)."""
        status, output, exact = 0, [], True
        for part in command.split(" && "):
            code, lines, part_exact = self._run_one(part, marker)
            output += lines
            exact &= part_exact
            if code != 0:
                return code, output, exact
            status = code
        return status, output, exact

    def _run_one(self, command: str, marker: dict) -> tuple[int, list[str], bool]:
        assignment = re.match(r"(\w+)=(\$\(|\S+$)", command)
        if assignment:  # VAR=value or VAR=$(...)...: bash computes it, here
            name = assignment.group(1)
            script = f'{command}\nprintf %s "${name}"'
            self.variables[name] = subprocess.run(["bash", "-c", script], cwd=self.folder,
                                                  capture_output=True, text=True, check=True).stdout
            return 0, [], True
        words = [self.expand(w) for w in shlex.split(command, comments=True)]
        env = {}
        while words and re.fullmatch(r"\w+=\S*", words[0]):
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        if words[:2] == ["make", "demo"]:
            return self._make_demo(marker)
        assert words[0] == "cnnlab", f"{command!r}: only cnnlab commands run here; mark it skip"
        argv = words[1:]
        for key, options in marker.get("args", {}).items():  # "train", or "lab data-scaling"
            if argv[:len(key.split())] == key.split():
                argv = with_options(argv, options)
        exact = bool(argv) and (argv[0] in EXACT_COMMANDS or "--weights" in argv
                                and argv[0] == "predict")
        buffer = io.StringIO()
        with self.monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                try:
                    code = main(argv)
                except SystemExit as stop:  # argparse: --help, usage errors
                    code = stop.code or 0
        return code, buffer.getvalue().splitlines(), exact

    def _make_demo(self, marker: dict) -> tuple[int, list[str], bool]:
        """``make demo`` as the Makefile's own recipe: its lines, echoed and run like make does."""
        makefile = (ROOT / "Makefile").read_text()
        values = dict(re.findall(r"^(\w+) \?= (.*)$", makefile, re.M))
        recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
        output = []
        for line in recipe.splitlines():
            line = re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], line.strip())
            output.append(line)
            code, lines, _ = self._run_one(line.replace(f"{values['VENV']}/bin/", ""), marker)
            output += lines
            if code:
                return code, output, False
        return 0, output, False


def _conftest():
    spec = importlib.util.spec_from_file_location("docs_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shrunk_fashion_mnist(root: Path) -> None:
    """Fashion-MNIST's first 600 training and 100 test images (synthetic where it is missing)."""
    from cnnlab.data import write_idx
    from cnnlab.data.idx import read_idx

    target = root / "fashion-mnist"
    target.mkdir(parents=True)
    for split, n in (("train", 600), ("t10k", 100)):
        try:
            source = ds.find_idx_dir("fashion-mnist", download=False)
            images = read_idx(ds._find_file(source, f"{split}-images-idx3-ubyte"))[:n]
            labels = read_idx(ds._find_file(source, f"{split}-labels-idx1-ubyte"))[:n]
        except DataError:  # no Fashion-MNIST here: the tests' learnable synthetic bars
            images, labels = _conftest().make_images(n, seed=int(split == "t10k"))
        write_idx(target / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(target / f"{split}-labels-idx1-ubyte.gz", labels)


@pytest.fixture
def reader(tmp_path, monkeypatch):
    """A new reader's folder: shrunk data, no network, an empty cache, ``.venv`` as here."""
    shrunk_fashion_mnist(tmp_path / "data")
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / ".venv").symlink_to(sys.prefix)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(ds, "DEBIAN_ROOT", tmp_path / "debian")

    def offline(*args, **kwargs):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return Session(folder, monkeypatch)


def run_python(block: Block, expected: list[str] | None, namespace: dict) -> None:
    text = block.text
    for old, new in block.marker.get("replace", {}).items():
        assert old in text, f"{block.page}:{block.line}: replace {old!r}: not in the block"
        text = text.replace(old, new)
    where = f"{block.page}:{block.line}"
    if text.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(text, namespace, where, block.page, block.line)
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
        buffer = io.StringIO()
        runner.run(test, out=buffer.write)
        assert runner.failures == 0, f"{where}: the doctest fails:\n{buffer.getvalue()}"
        return
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(text, where, "exec"), namespace)
    if expected is not None:
        actual = [line.rstrip() for line in buffer.getvalue().splitlines()]
        assert actual == [line.rstrip() for line in expected], f"{where}: output differs"


def follow(page: str, session: Session) -> None:
    blocks = parse_blocks(page)
    for k, block in enumerate(blocks):
        if block.marker.get("output") or isinstance(block.marker.get("skip"), str):
            continue
        nxt = blocks[k + 1] if k + 1 < len(blocks) else None
        prev = blocks[k - 1] if k else None
        shown = (nxt if nxt is not None and nxt.marker.get("output") is True else
                 prev if prev is not None and prev.marker.get("output") == "next" else None)
        expected = shown.text.splitlines() if shown is not None else None
        where = f"{page}:{block.line}"
        for command in block.marker.get("setup", []):  # what an earlier page left in the folder
            status, output, _ = session.run(command, {})
            assert status == 0, f"{where}: setup `{command}` exit {status}:\n" + "\n".join(output)
        if "file" in block.marker:
            text = block.text
            for old, new in block.marker.get("replace", {}).items():
                text = text.replace(old, new)
            Path(block.marker["file"]).write_text(text + "\n")
        elif block.kind == "python":
            run_python(block, expected, {"__name__": "__main__"})
        elif block.kind in ("shell", "session"):
            skips = block.marker.get("skip") or {}
            for command, shown in commands(block.text, block.kind == "session"):
                if any(s in command for s in skips):
                    continue
                status, output, exact = session.run(command, block.marker)
                fails = any("error:" in line for line in shown)
                text = "\n".join(output[-15:])
                assert (status != 0) == fails, f"{where}: `{command}` exit {status}:\n{text}"
                if shown:
                    want = normalize([session.expand(x) for x in shown], not exact)
                    got = normalize(output, not exact)
                    assert matches(want, got), (f"{where}: `{command}` printed\n" + "\n".join(got)
                                                + "\n--- the page shows\n" + "\n".join(want))
        else:
            raise AssertionError(f"{where}: a {block.kind} block the test cannot classify: give it "
                                 f"a marker (output, file or skip)")


def test_every_block_is_classified_and_skips_say_why():
    for page in PAGES:
        for block in parse_blocks(page):
            skip = block.marker.get("skip")
            reasons = [skip] if isinstance(skip, str) else list((skip or {}).values())
            assert all(isinstance(r, str) and len(r) > 10 for r in reasons), (page, block.line)
            if block.kind == "text":
                assert {"output", "file"} & set(block.marker) or isinstance(skip, str), (
                    f"{page}:{block.line}: unclassified block (mark it output, file or skip)")


def test_pages_in_order_never_write_the_same_run_twice():
    """A reader following README then every guide in one folder: no `--out` is reused."""
    seen = {}
    for page in PAGES:
        for block in parse_blocks(page):
            if block.kind not in ("shell", "session") or isinstance(block.marker.get("skip"), str):
                continue
            for command, _ in commands(block.text, block.kind == "session"):
                for part in command.split(" && "):
                    words = shlex.split(part, comments=True)
                    if "--out" in words and "--overwrite" not in words and "--show" not in words:
                        out = words[words.index("--out") + 1]
                        assert out not in seen, f"{page}: --out {out} was written by {seen[out]}"
                        seen[out] = page


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_runs_as_written(page, reader):
    follow(page, reader)


def test_the_comparison_can_fail():
    """The harness itself: wildcards, masks and option replacement do what the docstring says."""
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"]) and matches(["a", "...", "b"], ["a", "b"])
    assert not matches(["a", "...", "d"], ["a", "b"]) and not matches(["a"], ["a", "b"])
    assert normalize(["epoch   1/12  acc 68.42%  5,581 img/s  12s"], True) == ["epoch #/# acc #% # img/s #s"]
    assert normalize(["60,850 params, 2 epochs"], False) == ["60,850 params, 2 epochs"]
    assert normalize(["for 1 epoch"], True) == normalize(["for 12 epochs"], True)
    assert normalize(["precision auto: bf16 80 ms/step, fp32 198 ms/step -> bf16", "x"], False) == ["x"]
    argv = ["train", "r20", "--epochs", "10", "--set", "augment.flip=0.5", "--out", "runs/r20"]
    assert with_options(argv, "--epochs 1 --set augment.flip=0 --precision fp32") == [
        "train", "r20", "--epochs", "1", "--set", "augment.flip=0", "--out", "runs/r20",
        "--precision", "fp32"]
    assert commands("$ cnnlab a \\\n    --b\nout 1\n$ cnnlab c", True) == [
        ("cnnlab a  --b", ["out 1"]), ("cnnlab c", [])]
