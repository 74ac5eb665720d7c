"""Every command on a generated corpus of bad inputs: a counted skip (exit 0) or one line (exit 2), never a traceback.

The corpus (built once, in a temporary folder): images (zero-byte, truncated, random bytes, a
decompression bomb, odd modes, extreme aspect ratios, 1×1 px) mixed with good ones; checkpoints
(random bytes, zero-byte, a NaN weight, a wrong architecture, a code-executing pickle, a CNN's
state dict); output paths (an existing file, a folder under a file); class maps (malformed
JSON, a JSON list, unknown classes); cue-conflict tar members (corrupt, not an image); results
files (truncated, lacking keys readers need, from a newer vitscope).

Each command is one entry of :data:`COMMANDS`: its good invocation, where its model / data /
output go, how its results count skipped images, and its own bad option values. Every kind of
bad input is tried on every command that takes it. Commands run in-process through
``vitscope.cli.main``, exactly as ``python -m vitscope`` runs them.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import vitscope.models  # noqa: F401  (registers vit_tiny_patch4_32)
from vitscope.cli import main

TINY_KWARGS = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=2)
PRETRAIN_KWARGS = '{"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}'
UNREADABLE = ["a/bomb.png", "a/random.jpg", "a/truncated.png", "a/zero.png"]  # in the mixed folder
# tqdm's progress bars share stderr: "...| 3/8 [00:01<00:02, 2.50img/s]" (they are not error lines)
PROGRESS = re.compile(r"\[\d+:\d+(<[^,\]]*)?,[^\]]*\]\s*$")


# ---------------------------------------------------------------- the corpus


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header (IHDR) for ``width × height`` RGB pixels with almost no data: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def good_image(seed: int, size: tuple[int, int] = (32, 32)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def write_good(folder: Path, n: int, seed: int = 0) -> None:
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            good_image(seed + 100 * (cls == "b") + i).save(folder / cls / f"{i}.png")


def write_odd_but_readable(folder: Path) -> None:
    """Images that must be read, not skipped: CMYK, 16-bit, LA, palette with transparency, 1-bit, 1×1, 1×400, 400×1."""
    rgb = good_image(7)
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60)).save(folder / "grey16.png")
    rgb.convert("LA").save(folder / "la.png")
    p = rgb.convert("P")
    p.info["transparency"] = 0
    p.save(folder / "palette.png", transparency=0)
    rgb.convert("1").save(folder / "onebit.png")
    good_image(8, (1, 1)).save(folder / "pixel.png")
    good_image(9, (1, 400)).save(folder / "tall.png")
    good_image(10, (400, 1)).save(folder / "wide.png")


def write_unreadable(folder: Path) -> None:
    buf = io.BytesIO()
    good_image(11).save(buf, format="PNG")
    (folder / "zero.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "random.jpg").write_bytes(np.random.default_rng(12).bytes(3000))
    (folder / "bomb.png").write_bytes(png_claiming(100_000, 100_000))


class RunsCode:
    """Unpickling this creates ``marker``: a checkpoint that would run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def tiny_checkpoint(model: torch.nn.Module) -> dict:
    return {"format": "vitscope-checkpoint", "version": 1, "arch": "vit_tiny_patch4_32", "arch_kwargs": TINY_KWARGS,
            "model": model.state_dict()}


@dataclass
class Corpus:
    root: Path
    model: str = ""
    good: str = ""
    mixed: str = ""
    cue_tar: str = ""
    analysis: str = ""  # a `vitscope analyze` results folder, for plot and report
    bad_models: dict[str, str] = field(default_factory=dict)
    pwned: Path = Path()

    def out(self, name: str) -> str:
        return str(self.root / "out" / name)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """pretrain caches decoded folders under $VITSCOPE_DATA: keep the user's cache out of it."""
    monkeypatch.setenv("VITSCOPE_DATA", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("corpus")
    c = Corpus(root)
    write_good(root / "good", 3)
    write_good(root / "mixed", 3, seed=50)
    write_odd_but_readable(root / "mixed" / "b")
    write_unreadable(root / "mixed" / "a")
    c.good, c.mixed = str(root / "good"), str(root / "mixed")

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch4_32", **TINY_KWARGS)
    torch.save(tiny_checkpoint(model), root / "tiny.pt")
    torch.save(model.state_dict(), root / "plain.pt")  # a timm state dict: its architecture is inferred
    c.model = str(root / "tiny.pt")
    ck = root / "checkpoints"
    ck.mkdir()
    (ck / "random.pt").write_bytes(np.random.default_rng(13).bytes(4096))
    (ck / "zero.pt").write_bytes(b"")
    with torch.no_grad():
        nan = timm.create_model("vit_tiny_patch4_32", **TINY_KWARGS)
        nan.blocks[0].mlp.fc1.weight[3, 5] = float("nan")
    torch.save(tiny_checkpoint(nan), ck / "nan.pt")
    with torch.no_grad():  # finite weights whose products overflow: block 0's MLP gives inf
        overflow = timm.create_model("vit_tiny_patch4_32", **TINY_KWARGS)
        overflow.blocks[0].mlp.fc1.weight.fill_(3e38)
    torch.save(tiny_checkpoint(overflow), ck / "overflow.pt")
    c.pwned = root / "pwned"
    torch.save({"model": model.state_dict(), "hook": RunsCode(c.pwned)}, ck / "evil.pt")
    torch.save({"conv1.weight": torch.randn(8, 3, 7, 7), "bn1.weight": torch.ones(8), "bn1.bias": torch.zeros(8),
                "layer1.0.conv1.weight": torch.randn(8, 8, 3, 3), "fc.weight": torch.randn(2, 8),
                "fc.bias": torch.zeros(2)}, ck / "cnn.pt")
    c.bad_models = {name: str(ck / f"{name}.pt") for name in ("random", "zero", "nan", "overflow", "evil", "cnn")}
    c.bad_models["wrong-arch"] = f"{root / 'plain.pt'}@vit_tiny_patch4_32"
    c.bad_models["unknown-spec"] = "nonesuch:model"

    tar = root / "cue.tar"
    with tarfile.open(tar, "w") as tf:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        for i, name in enumerate(["a/a1-b1.png", "a/a2-b2.png", "b/b1-a1.png", "b/b2-a2.png"]):
            buf = io.BytesIO()
            good_image(20 + i).save(buf, format="PNG")
            add(name, buf.getvalue())
        add("b/b3-a3.png", b"\x89PNG\r\n\x1a\n not really")  # a corrupt member: skipped and counted
        add("README.txt", b"not an image")  # not an image: not a stimulus
    c.cue_tar = str(tar)

    (root / "file").write_text("an ordinary file\n")
    (root / "map.json").write_text('{"a": "0", "b": ')
    (root / "list.json").write_text('["a", "b"]')
    (root / "bad.json").write_text("{not json")
    (root / "wrong-kind.json").write_text('{"kind": "something-else"}')

    code, _, err = run(["analyze", "--model", c.model, "--data", c.good, "--out", str(root / "analysis"),
                        "--workers", "0", "--no-progress", "--batch-size", "4", "--device", "cpu"])
    assert code == 0, err
    c.analysis = str(root / "analysis")
    write_broken_results(root / "analysis" / "results.json", root / "results")
    return c


def write_broken_results(good: Path, folder: Path) -> None:
    """Results folders ``folder/NAME`` made from the good analysis ``good``: ``truncated`` (half the
    bytes), ``no-nmi`` and ``no-model`` (keys readers need deleted), ``newer`` (a future schema)."""
    text = good.read_text()
    r = json.loads(text)
    no_nmi, no_model, newer = json.loads(text), json.loads(text), json.loads(text)
    del no_nmi["metrics"]["attention"]["nmi"], no_nmi["metrics"]["attention"]["nmi_per_head"], no_model["model"]
    newer["schema_version"] = 99
    broken = {"truncated": text[: len(text) // 2], "no-nmi": json.dumps(no_nmi), "no-model": json.dumps(no_model),
              "newer": json.dumps(newer)}
    assert r["schema_version"] == 1
    for name, content in broken.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "results.json").write_text(content)


# ---------------------------------------------------------------- running a command


def run(argv: list[str]) -> tuple[int, str, str]:
    """``python -m vitscope ARGV`` in-process: (exit code, stdout, stderr)."""
    import contextlib

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        main(argv)
    return int(e.value.code or 0), out.getvalue(), err.getvalue()


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that are not progress bars."""
    return [ln for ln in stderr.replace("\r", "\n").splitlines() if ln.strip() and not PROGRESS.search(ln)]


def assert_one_line_error(argv: list[str], match: str = "") -> str:
    code, out, err = run(argv)
    assert "Traceback" not in out + err, err[-3000:]
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("vitscope: error: "), (code, lines, out[-500:])
    assert re.search(match, lines[0]), lines[0]
    return lines[0]


def assert_counted_skip(argv: list[str]) -> str:
    code, out, err = run(argv)
    assert "Traceback" not in out + err, err[-3000:]
    assert code == 0, (code, error_lines(err)[-5:])
    if "--no-progress" in argv:
        assert not [ln for ln in err.replace("\r", "\n").splitlines() if PROGRESS.search(ln)], err[-1000:]
    return out


# ---------------------------------------------------------------- the commands


Args = dict[str, "str | list[str] | None"]


@dataclass
class Command:
    """How the corpus runs one command.

    ``args(c)``: a good invocation as ``{option: value}`` (a list repeats the option, None is a flag);
    ``model`` / ``data`` / ``out``: the options that take a model spec, image data, the output path;
    ``skipped(out_path)``: unreadable images its results report for the mixed folder;
    ``bad_options``: overrides that must each be a one-line error;
    ``with_checkpoint`` / ``with_mixed``: overrides that go with another model / the mixed images.
    """

    args: Callable[[Corpus], Args]
    model: str | None = "--model"
    data: str | None = None
    out: str = "--out"
    skipped: Callable[[Path], int] | None = None
    bad_options: list[Args] = field(default_factory=list)
    with_checkpoint: Args = field(default_factory=dict)
    with_mixed: Args = field(default_factory=dict)


def results(path: Path, name: str = "results.json") -> dict:
    """A results file the command wrote, read as every reader reads it: its layout is what they need."""
    from vitscope.results import READERS, read_results

    return [read_results(path / name, reader=reader) for reader in (*READERS, None)][-1]


def count(msgs: object) -> int:
    return msgs if isinstance(msgs, int) else len(msgs)  # type: ignore[arg-type]


COMMON = {"--workers": "0", "--device": "cpu", "--no-progress": None}
#: Broken results files (see :func:`write_broken_results`) and what each reader must say about them.
BROKEN_RESULTS = {"truncated": r"results/truncated/results.json is not valid JSON",
                  "no-nmi": r"results/no-nmi/results.json lacks metrics\.attention\.nmi",
                  "no-model": r"results/no-model/results.json lacks model",
                  "newer": r"results/newer/results.json has results schema version 99, newer .*upgrade vitscope"}

COMMANDS: dict[str, Command] = {
    "analyze": Command(
        lambda c: {"--model": c.model, "--data": c.good, **COMMON, "--batch-size": "4",
                   "--no-plots": None},
        data="--data", skipped=lambda o: count(results(o)["data"]["skipped"]),
        bad_options=[{"--images": "0"}, {"--images": "-3"}, {"--batch-size": "0"}, {"--metrics": "bogus"},
                     {"--metrics": ","}, {"--precision": "fp13"}, {"--device": "tpu"}, {"--images": "many"}],
    ),
    "compare": Command(
        lambda c: {"--model": [c.model, c.model], "--data": c.good, **COMMON, "--batch-size": "4"},
        data="--data", skipped=lambda o: results(o)["data"]["skipped"],
        bad_options=[{"--images": "0"}, {"--batch-size": "2"}, {"--token-reduction": "bogus"},
                     {"--layer-type": "bogus"}, {"--precision": "fp13"}, {"--model": ["a", "b", "c"]}],
    ),
    "probe": Command(
        lambda c: {"--model": c.model, "--train-data": c.good, "--val-data": c.good, **COMMON, "--epochs": "1",
                   "--batch-size": "4", "--k": "2"},
        data="--train-data", skipped=lambda o: results(o, "probe.json")["provenance"]["skipped"]["train"],
        bad_options=[{"--k": "0"}, {"--epochs": "0"}, {"--batch-size": "-1"}, {"--features": "bogus"},
                     {"--optimizer": "bogus"}, {"--save-probe": None, "--probe-at": "cls:99"},
                     {"--val-images": "0"}, {"--temperature": "0"}, {"--lr": "-1"}, {"--weight-decay": "-1"}],
    ),
    "finetune": Command(
        lambda c: {"--model": c.model, "--train-data": c.good, "--val-data": c.good, **COMMON, "--epochs": "1",
                   "--batch-size": "4", "--warmup-epochs": "0"},
        data="--train-data", skipped=None,
        bad_options=[{"--epochs": "0"}, {"--batch-size": "0"}, {"--reinit": "middle:2"}, {"--reinit": "last:99"},
                     {"--layer-decay": "0"}, {"--mixup": "-1"}, {"--images": "0"}, {"--lr": "-1"}],
    ),
    "pretrain": Command(
        lambda c: {"--method": "simmim", "--model": "vit_tiny_patch4_32", "--data": c.good, "--epochs": "1",
                   "--batch-size": "4", "--device": "cpu", "--no-progress": None,
                   "--set": ["workers=0", "tensorboard=false", f"model_kwargs={PRETRAIN_KWARGS}"]},
        data="--data", skipped=None,
        bad_options=[{"--method": "bogus"}, {"--epochs": "-1"}, {"--batch-size": "0"}, {"--lambda": "2"},
                     {"--local-attention": "2"}, {"--set": ["nonesuch=1"]}, {"--set": ["epochs"]},
                     {"--config": "{root}/bad.json"}, {"--resume": None}, {"--precision": "fp16"}],
        with_checkpoint={"--set": ["workers=0", "tensorboard=false"]},  # model_kwargs are for fresh models
        with_mixed={"--set": ["workers=0", "tensorboard=false", f"model_kwargs={PRETRAIN_KWARGS}",
                              "data_on_device=no"]},  # on-device data needs one image size
    ),
    "robustness": Command(
        lambda c: {"--model": c.model, "--data": c.good, "--cue-conflict": c.cue_tar, **COMMON, "--batch-size": "4",
                   "--class-map": ["a=0", "b=1"], "--frequencies": "0,1"},
        data="--data", skipped=lambda o: results(o)["models"][0]["noise"]["unreadable"],
        bad_options=[{"--frequencies": "x,y"}, {"--frequencies": "3"}, {"--band-width": "0"}, {"--band-norm": "bogus"},
                     {"--noise-scale": "bogus"}, {"--noise-strength": "-1"}, {"--images": "0"},
                     {"--class-map": ["{root}/map.json"]}, {"--class-map": ["{root}/list.json"]},
                     {"--class-map": ["a=nonesuch", "b=1"]}, {"--class-map": ["oops"]},
                     {"--cue-conflict": "{root}/file"}, {"--probe": ["a", "b"]}],
    ),
    "plot": Command(
        lambda c: {"": [c.analysis]},
        model=None,
        bad_options=[{"": ["{root}/nonesuch"]}, {"": ["{root}/bad.json"]}, {"": ["{root}/wrong-kind.json"]},
                     {"": ["{root}/file"]}],
    ),
    "report": Command(
        lambda c: {"": [c.analysis]},
        model=None,
        bad_options=[{"": ["{root}/nonesuch"]}, {"": ["{root}/good"]}],
    ),
    "inspect": Command(
        lambda c: {"--model": c.model, "--data": c.good, "--device": "cpu", "--images": "4", "--no-progress": None},
        data="--data", skipped=lambda o: count(results(o, "inspect.json")["data"]["skipped"]),
        bad_options=[{"--images": "0"}, {"--block": "0"}, {"--query": "9,9"}, {"--precision": "fp13"}, {"--batch-size": "0"},
                     {"--device": "tpu"}, {"--class": "nonesuch"}],
        with_mixed={"--images": "18"},  # every image of the mixed folder, the unreadable ones too
    ),
}


def argv_of(name: str, c: Corpus, out: str, **overrides: "str | list[str] | None") -> list[str]:
    cmd = COMMANDS[name]
    args = {**cmd.args(c), cmd.out: out, **overrides}
    argv = [name]
    for opt, value in args.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            argv += ([opt] if opt else []) + ([] if v is None else [str(v).replace("{root}", str(c.root))])
    return argv


# ---------------------------------------------------------------- the cases


def cases(kind: str) -> list:
    out = []
    for name, cmd in COMMANDS.items():
        if kind == "model" and cmd.model:
            out += [pytest.param(name, bad, id=f"{name}-{bad}") for bad in
                    ("random", "zero", "nan", "overflow", "evil", "cnn", "wrong-arch", "unknown-spec")
                    if (name, bad) not in UNCHECKED]
        elif kind == "data" and cmd.data:
            out.append(pytest.param(name, id=name))
        elif kind == "option":
            out += [pytest.param(name, i, id=f"{name}-{'-'.join(k.strip('-') or 'arg' for k in o)}-{i}")
                    for i, o in enumerate(cmd.bad_options)]
        elif kind == "out":
            out += [pytest.param(name, where, id=f"{name}-{where}") for where in ("existing-file", "under-a-file")]
    return out


#: Bad models a command does not look for: pretrain trains the checkpoint it is given, and its
#: loss, not a check of the activations, shows a model that overflows.
UNCHECKED = {("pretrain", "overflow")}
MODEL_ERRORS = {"random": "not a checkpoint", "zero": "empty file", "nan": r"non-finite weights.*blocks\.0\.mlp\.fc1.*block 0",
                "overflow": r"non-finite activations \(NaN/inf\): they first appear in the output of block 0",
                "evil": "arbitrary Python objects", "cnn": "not a ViT", "wrong-arch": "does not fit",
                "unknown-spec": "unknown model spec"}


@pytest.mark.parametrize("name, bad", cases("model"))
def test_bad_checkpoint_is_one_line(corpus, name, bad):
    model = corpus.bad_models[bad]
    cmd = COMMANDS[name]
    good = cmd.args(corpus)[cmd.model]
    override = [model] * len(good) if isinstance(good, list) else model
    assert_one_line_error(argv_of(name, corpus, corpus.out(f"{name}-{bad}"), **cmd.with_checkpoint,
                                  **{cmd.model: override}), MODEL_ERRORS[bad])
    assert not corpus.pwned.exists()


@pytest.mark.parametrize("name", cases("data"))
def test_unreadable_images_are_skipped_and_counted(corpus, name):
    cmd = COMMANDS[name]
    out = Path(corpus.out(f"{name}-mixed"))
    assert_counted_skip(argv_of(name, corpus, str(out), **cmd.with_mixed, **{cmd.data: corpus.mixed}))
    if cmd.skipped is not None:
        assert cmd.skipped(out) == len(UNREADABLE)
    if name == "analyze":  # named too, and every odd-but-readable image was read
        saved = results(out)
        assert sorted(m.split(":")[0] for m in saved["data"]["skipped"]) == UNREADABLE
        assert saved["data"]["images"] == 6 + 8
        assert any("DecompressionBombError" in m for m in saved["data"]["skipped"])


@pytest.mark.parametrize("name, i", cases("option"))
def test_bad_option_is_one_line(corpus, name, i):
    assert_one_line_error(argv_of(name, corpus, corpus.out(f"{name}-opt{i}"), **COMMANDS[name].bad_options[i]))


#: Every reader of results files: the command and how it is given one results folder.
READERS: dict[str, tuple[str, Callable[[str], Args]]] = {
    "plot": ("plot", lambda f: {"": [f]}),
    "report": ("report", lambda f: {"": [f]}),
    "findings": ("report", lambda f: {"": [f], "--family": f"{Path(f).name}=cl"}),
    "inspect-nmi-kde": ("inspect", lambda f: {"--results": f}),
}


@pytest.mark.parametrize("broken", sorted(BROKEN_RESULTS))
@pytest.mark.parametrize("reader", sorted(READERS))
def test_broken_results_file_is_one_line_naming_file_and_fault(corpus, reader, broken):
    name, given = READERS[reader]
    folder = str(corpus.root / "results" / broken)
    assert_one_line_error(argv_of(name, corpus, corpus.out(f"{reader}-{broken}"), **given(folder)),
                          BROKEN_RESULTS[broken])


@pytest.mark.parametrize("name, where", cases("out"))
def test_bad_output_path_is_one_line_and_writes_nothing(corpus, name, where):
    target = corpus.root / "file" if where == "existing-file" else corpus.root / "file" / "sub"
    if name == "report" and where == "existing-file":
        target = corpus.root / "good"  # report writes a file: an existing folder is its bad target
    before = sorted(p.name for p in corpus.root.iterdir())
    assert_one_line_error(argv_of(name, corpus, str(target)))
    assert (corpus.root / "file").read_text() == "an ordinary file\n"
    assert sorted(p.name for p in corpus.root.iterdir()) == before  # no stray (temp) files


def test_corrupt_tar_member_is_skipped_and_counted(corpus):
    out = Path(corpus.out("robustness-tar"))
    assert_counted_skip(argv_of("robustness", corpus, str(out)))
    images = results(out)["models"][0]["shape_bias"]["images"]
    assert images["unreadable"] == 1 and images["files"] == 5  # README.txt is not a stimulus


def test_full_disk_is_one_line_and_leaves_no_file(corpus, monkeypatch):
    """ENOSPC on the results write (a monkeypatched fsync: no mount needed)."""
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = Path(corpus.out("full"))
    assert_one_line_error(argv_of("analyze", corpus, str(out)), "No space left on device")
    assert list(out.iterdir()) == []


def test_full_tmpfs_is_one_line_and_leaves_no_file(corpus, tmp_path):
    """A real full disk: a 4 KiB tmpfs (results.json is ~7 KB) (needs root and mount; skipped otherwise)."""
    import subprocess

    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        assert_one_line_error(argv_of("analyze", corpus, str(mnt / "o"), **{"--no-plots": None}),
                              "No space left on device")
        assert [p.name for p in (mnt / "o").iterdir()] == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_usage_error_is_one_line(corpus):
    assert_one_line_error(["analyze", "--nope"], r"No such option.*--help")
    assert_one_line_error(["nonesuch"], "No such command")
