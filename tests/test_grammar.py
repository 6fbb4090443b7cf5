"""One grammar: the same table of spellings fed to every front end, the
`patchmap` tool (`info IMAGE --json --key-name VALUE`), a descriptor
(`key_name = VALUE`, read by desc-dump as the preload shim reads it) and
Python (`patchmap.describe(image, window, key_name=VALUE)`), must resolve to
the same options and matrix, or fail with the same pm_spec message.

Environment: PATCHMAP_EXE (the tool), PATCHMAP_DESC_DUMP (desc-dump),
PATCHMAP_LIBRARY and PATCHMAP_PYTHON_DIR (the Python package)."""

import json
import os
import subprocess
import sys

import pytest

np = pytest.importorskip("numpy")

EXE = os.environ.get("PATCHMAP_EXE", "")
DUMP = os.environ.get("PATCHMAP_DESC_DUMP", "")

# The images: 2-D gray, and an (H, W, 3) colour image (channels last by the
# channel rule).
IMAGES = {
    "gray": np.arange(10 * 12, dtype=np.uint8).reshape(10, 12),
    "rgb": (np.arange(9 * 11 * 3) % 251).astype(np.uint8).reshape(9, 11, 3),
    "f32": np.linspace(-1, 1, 8 * 9, dtype=np.float32).reshape(8, 9),
}

# (image, {key: value}) that every front end accepts; rows in a group give
# the same options (a group is a list of spellings of one meaning).
GOOD = [
    ("gray", [{"window": "3"}, {"window": "3x3"}, {"window": "3,3"}, {"window": "3, 3"},
              {"window": "3 x 3"}, {"window": " 3X3 "}]),
    ("gray", [{"window": "3x4", "step": "2"}, {"window": "3x4", "step": "2x2"},
              {"window": "3,4", "step": "2, 2"}]),
    ("gray", [{"window": "3", "dilation": "2x1"}, {"window": "3", "dilation": "2,1"}]),
    ("gray", [{"window": "3", "pad": "same"}, {"window": "3", "pad": "SAME"},
              {"window": "3", "pad_mode": "zero"}, {"window": "3", "pad": "1"}]),
    ("gray", [{"window": "4", "step": "3", "pad": "same"}]),
    ("gray", [{"window": "3", "pad": "valid"}, {"window": "3", "pad": "0"},
              {"window": "3", "pad": "0x0"}]),
    ("gray", [{"window": "3", "pad": "2, 1x3"}, {"window": "3", "pad": "2x2,1x3"}]),
    ("gray", [{"window": "3", "pad_mode": "reflect"}, {"window": "3", "pad_mode": "Reflect"},
              {"window": "3", "pad_mode": "reflect", "pad": "same"}]),
    ("gray", [{"window": "3", "pad_mode": "constant", "pad_value": "7"},
              {"window": "3", "pad_mode": "CONSTANT", "pad_value": "7.0"}]),
    ("gray", [{"window": "3", "pad_mode": "wrap", "pad": "2"}]),
    ("gray", [{"window": "3", "dtype": "float64"}, {"window": "3", "dtype": "f64"},
              {"window": "3", "dtype": "f8"}, {"window": "3", "dtype": "<f8"},
              {"window": "3", "dtype": "Float64"}]),
    ("gray", [{"window": "3"}, {"window": "3", "dtype": "float32"}, {"window": "3", "dtype": "f4"},
              {"window": "3", "dtype": "f32"}]),
    ("gray", [{"window": "3", "dtype": "same"}, {"window": "3", "dtype": "uint8"},
              {"window": "3", "dtype": "u1"}, {"window": "3", "dtype": "|u1"}]),
    ("gray", [{"window": "3", "scale": "0.5", "offset": "-1"},
              {"window": "3", "scale": "5e-1", "offset": "-1.0"}]),
    ("gray", [{"window": "3", "order": "channel"}, {"window": "3", "order": "CHANNEL"}]),
    ("gray", [{"window": "3", "layout": "cols"}, {"window": "3", "layout": "Cols"}]),
    ("gray", [{"window": "3", "row_pitch": "64"}, {"window": "3", "row_pitch": "64B"}]),
    ("gray", [{"window": "3", "budget": "64K"}, {"window": "3", "budget": "64 K"},
              {"window": "3", "budget": "64KiB"}, {"window": "3", "budget": "64kb"},
              {"window": "3", "budget": "65536"}]),
    ("gray", [{"window": "3", "budget": "1.5G"}, {"window": "3", "budget": "1536M"},
              {"window": "3", "budget": "1.5 GiB"}]),
    ("gray", [{"window": "3", "budget": "unlimited"}, {"window": "3", "budget": "Unlimited"},
              {"window": "3", "budget": "UNLIMITED"}]),
    ("gray", [{"window": "3", "chunk": "1M"}, {"window": "3", "chunk": "1024K"}]),
    ("gray", [{"window": "3", "backend": "sigsegv"}, {"window": "3", "backend": "SIGSEGV"}]),
    ("gray", [{"window": "3", "backend": "eager"}]),
    ("gray", [{"window": "3", "threads": "3"}]),
    ("gray", [{"window": "3", "readahead": "none"}, {"window": "3", "readahead": "0"}]),
    ("gray", [{"window": "3", "readahead": "4"}]),
    ("gray", [{"window": "3", "writable": "yes"}, {"window": "3", "writable": "true"},
              {"window": "3", "writable": "1"}]),
    ("gray", [{"window": "3", "channel_axis": "auto"}, {"window": "3"}]),
    ("rgb", [{"window": "2"}, {"window": "2x2"}, {"window": "2", "channel_axis": "last"},
             {"window": "2", "channel_axis": "-1"}, {"window": "2", "channel_axis": "2"}]),
    ("rgb", [{"window": "2", "channel_axis": "none"}, {"window": "2x2x2"},
             {"window": "2x2x2", "channel_axis": "none"}]),
    ("rgb", [{"window": "2", "channel_axis": "first"}, {"window": "2", "channel_axis": "0"}]),
    ("rgb", [{"window": "2x3", "order": "channel", "pad_mode": "edge"}]),
    ("f32", [{"window": "2", "pad_mode": "constant", "pad_value": "-2.5", "dtype": "same"}]),
    ("gray", [{"window": "3", "row_range": "3:7"}, {"window": "3", "row_range": " 3 : 7 "}]),
    ("gray", [{"window": "3", "row_range": "70:"}, {"window": "3", "row_range": "70:80"}]),
    ("gray", [{"window": "3", "row_range": ":5"}, {"window": "3", "row_range": "0:5"}]),
    ("rgb", [{"window": "2", "row_range": "1:9", "dtype": "f64", "pad": "same"}]),
]

# (image, {key: value}, the key the message names) that every front end
# refuses with the same message.
BAD = [
    ("gray", {"window": "0"}, "window"),
    ("gray", {"window": "3x"}, "window"),
    ("gray", {"window": "x3"}, "window"),
    ("gray", {"window": "3", "step": "two"}, "step"),
    ("gray", {"window": "3", "dilation": "-1"}, "dilation"),
    ("gray", {"window": "3x3x3"}, "window"),
    ("gray", {"window": "11"}, "window"),
    ("rgb", {"window": "2x2x2x2"}, "window"),
    ("gray", {"window": "3", "step": "1x2x3"}, "step"),
    ("gray", {"window": "3", "pad": "1,,2"}, "pad"),
    ("gray", {"window": "3", "pad": "mirror"}, "pad"),
    ("gray", {"window": "3", "pad_mode": "mirror"}, "pad_mode"),
    ("gray", {"window": "3", "pad_mode": "constant", "pad_value": "300"}, "pad_value"),
    ("gray", {"window": "3", "pad_mode": "edge", "pad_value": "1"}, "pad_value"),
    ("gray", {"window": "3", "pad_value": "one"}, "pad_value"),
    ("gray", {"window": "3", "dtype": "u8"}, "dtype"),
    ("gray", {"window": "3", "dtype": "i8"}, "dtype"),
    ("gray", {"window": "3", "dtype": ">f4"}, "dtype"),
    ("gray", {"window": "3", "dtype": "complex64"}, "dtype"),
    ("gray", {"window": "3", "dtype": "int16"}, "dtype"),
    ("gray", {"window": "3", "dtype": "uint8", "scale": "2"}, "scale"),
    ("gray", {"window": "3", "scale": "1,5"}, "scale"),
    ("gray", {"window": "3", "order": "rows"}, "order"),
    ("gray", {"window": "3", "layout": "transposed"}, "layout"),
    ("gray", {"window": "3", "row_pitch": "5"}, "row_pitch"),
    ("gray", {"window": "3", "budget": "lots"}, "budget"),
    ("gray", {"window": "3", "budget": "0"}, "budget"),
    ("gray", {"window": "3", "budget": "1.5"}, "budget"),
    ("gray", {"window": "3", "chunk": "5000"}, "chunk"),
    ("gray", {"window": "3", "backend": "mmap"}, "backend"),
    ("gray", {"window": "3", "threads": "-1"}, "threads"),
    ("gray", {"window": "3", "readahead": "-3"}, "readahead"),
    ("gray", {"window": "3", "writable": "maybe"}, "writable"),
    ("gray", {"window": "3", "channel_axis": "middle"}, "channel_axis"),
    ("rgb", {"window": "2", "channel_axis": "3"}, "channel_axis"),
    ("gray", {"window": "3", "pad": "2000000000"}, "pad"),
    ("gray", {"window": "3", "pad_mode": "constant", "pad_value": "1e-400"}, "pad_value"),
    ("gray", {"window": "3", "pad_mode": "constant", "pad_value": "1e400"}, "pad_value"),
    ("gray", {"window": "3", "scale": "1e999"}, "scale"),
    ("gray", {"window": "3", "offset": "-1e-999"}, "offset"),
    ("gray", {"window": "3", "chunk": "1P"}, "chunk"),
    ("gray", {"window": "100000000", "pad": "0x100000000"}, "window"),
    ("gray", {"window": "3", "row_range": "5:81"}, "row_range"),
    ("gray", {"window": "3", "row_range": "80:"}, "row_range"),
    ("gray", {"window": "3", "row_range": "7:3"}, "row_range"),
    ("gray", {"window": "3", "row_range": "3"}, "row_range"),
    ("gray", {"window": "3", "row_range": "-1:3"}, "row_range"),
    ("gray", {"window": "3", "row_range": "1:2", "layout": "cols"}, "row_range"),
]

# (image, {key: value}, what the message must say, what it must not): the
# message is right, not only the same in every front end.
BAD_WORDS = [
    # the padding makes the matrix too large, not the window
    ("gray", {"window": "3", "pad": "2000000000"},
     ["pad: '2000000000' makes the padded source (4000000010x4000000012)", "pad less"],
     ["window:"]),
    # a window that is too large with only the padding it needs stays the window's
    ("gray", {"window": "100000000", "pad": "0x100000000"}, ["window: '100000000'"], ["pad:"]),
    # a number that is not representable, which is not "not a number"
    ("gray", {"window": "3", "pad_mode": "constant", "pad_value": "1e-400"},
     ["'1e-400' is a number too small to be represented", "underflows to 0"], ["not a number"]),
    ("gray", {"window": "3", "pad_mode": "constant", "pad_value": "1e400"},
     ["'1e400' is a number too large to be represented", "overflows"], ["not a number"]),
    ("gray", {"window": "3", "scale": "1e999"}, ["too large to be represented"],
     ["not a finite number"]),
    # the chunk size has nothing to do with the source's shape
    ("gray", {"window": "3", "chunk": "1P"}, ["chunk: '1P' is not a power of two", "64 TiB"],
     ["shape", "10x12"]),
]

# Representable, though strtod says ERANGE for them: subnormal doubles.
SUBNORMAL = [
    ("f32", {"window": "2", "dtype": "float64", "scale": "1e-310"}),
    ("f32", {"window": "2", "dtype": "float64", "offset": "-4.9e-324"}),
]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("grammar")
    for name, arr in IMAGES.items():
        np.save(d / f"{name}.npy", arr)
    return d


def python_module():
    """The package's describe(), or None while the package has none."""
    pydir = os.environ.get("PATCHMAP_PYTHON_DIR")
    if not pydir or not os.environ.get("PATCHMAP_LIBRARY"):
        return None
    if pydir not in sys.path:
        sys.path.insert(0, pydir)
    try:
        import patchmap
    except ImportError:
        return None
    return patchmap if hasattr(patchmap, "describe") else None


# ------------------------------------------------------------------ the three columns

def tool(images, image, kw):
    if not EXE:
        pytest.skip("PATCHMAP_EXE does not name the patchmap binary")
    args = [EXE, "info", str(images / f"{image}.npy"), "--json"]
    for k, v in kw.items():
        args += ["--" + k.replace("_", "-"), v]
    # cwd: the files named by rows and mask are relative, as in a descriptor
    p = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=images)
    if p.returncode:
        rep = json.loads(p.stdout)
        assert rep["exit"] == p.returncode and p.stderr == f"patchmap: {rep['error']}\n"
        return {"error": rep["error"]}
    rep = json.loads(p.stdout)
    return {"options": rep["options"], "matrix": rep["matrix"], "rows": rep["rows"]}


def descriptor(images, image, kw, n=[0]):
    if not DUMP:
        pytest.skip("PATCHMAP_DESC_DUMP does not name desc-dump")
    n[0] += 1
    path = images / f"d{n[0]}.patchmap"
    path.write_text(f"source = {image}.npy\n" + "".join(f"{k} = {v}\n" for k, v in kw.items()))
    p = subprocess.run([DUMP, str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 1), p.stderr
    rep = json.loads(p.stdout)
    if p.returncode:
        # the error is on the line of the key it names (the source is line 1)
        return {"error": rep["error"], "line": rep["line"]}
    return rep


def python(image, kw):
    pm = python_module()
    if pm is None:
        return None
    kw = dict(kw)
    window = kw.pop("window")
    if "pad" in kw:  # Python spells it as numpy.pad does
        kw["padding"] = kw.pop("pad")
    try:
        rep = pm.describe(IMAGES[image], window, **kw)
    except (ValueError, TypeError) as e:
        return {"error": str(e)}
    return {"options": rep["options"], "matrix": rep["matrix"], "rows": rep["rows"]}


# ------------------------------------------------------------------ checks

def same_message(a, b):
    """The pm_spec line is the whole of one message and within the other
    (a front end may say where: 'info: ... (see patchmap info --help)')."""
    return a == b or a in b or b in a


@pytest.mark.parametrize("image,group", GOOD, ids=[f"{i}-{g[0]}" for i, g in GOOD])
def test_good_spellings(images, image, group):
    first = None
    for kw in group:
        got = [tool(images, image, kw), descriptor(images, image, kw)]
        py = python(image, kw)
        if py is not None:
            got.append(py)
        for g in got:
            assert "error" not in g, (kw, g)
        assert all(g == got[0] for g in got), (kw, got)
        if first is None:
            first = got[0]
        assert got[0] == first, ("one meaning, many spellings", group[0], kw)


def test_good_spellings_mean_what_they_say(images):
    """A few resolved values, so that the table cannot pass by all three
    front ends agreeing on something wrong."""
    rep = tool(images, "gray", {"window": "4", "step": "3", "pad": "same"})
    # TensorFlow's same: ceil(10/3) = 4 and ceil(12/3) = 4 windows; padding
    # (4-1)*3 + 4 - 10 = 3 (1 before, 2 after) and (4-1)*3 + 4 - 12 = 1
    assert rep["matrix"]["out_shape"] == [4, 4]
    assert rep["options"]["pad_before"] == [1, 0] and rep["options"]["pad_after"] == [2, 1]
    rep = tool(images, "rgb", {"window": "2"})
    assert rep["options"]["channel_axis"] == 2 and rep["matrix"]["cols"] == 12
    rep = tool(images, "rgb", {"window": "2", "channel_axis": "none"})
    assert rep["options"]["channel_axis"] is None and rep["matrix"]["cols"] == 8
    rep = tool(images, "gray", {"window": "3", "budget": "1.5G"})
    assert rep["options"]["budget"] == 1536 << 20
    rep = tool(images, "gray", {"window": "3"})
    assert rep["options"]["dtype"] == "float32" and rep["options"]["budget"] is None


@pytest.mark.parametrize("image,kw,key", BAD, ids=[f"{i}-{kw}" for i, kw, _ in BAD])
def test_bad_spellings(images, image, kw, key):
    t = tool(images, image, kw)
    d = descriptor(images, image, kw)
    assert "error" in t and "error" in d, (t, d)
    # the descriptor's line is the key's
    assert d["line"] == 2 + list(kw).index(key), d
    msg = d["error"]
    assert msg.startswith(key + ": "), msg
    assert same_message(msg, t["error"]), (msg, t["error"])
    py = python(image, kw)
    if py is not None:
        assert "error" in py, py
        assert same_message(msg, py["error"]), (msg, py["error"])


@pytest.mark.parametrize("image,kw,want,unwanted", BAD_WORDS,
                         ids=[f"{i}-{kw}" for i, kw, _, _ in BAD_WORDS])
def test_bad_spellings_say_what_is_wrong(images, image, kw, want, unwanted):
    msgs = [tool(images, image, kw)["error"], descriptor(images, image, kw)["error"]]
    py = python(image, kw)
    if py is not None:
        msgs.append(py["error"])
    for m in msgs:
        for w in want:
            assert w in m, (w, m)
        for u in unwanted:
            assert u not in m.replace("patchmap.describe(window_shape=", ""), (u, m)


@pytest.mark.parametrize("image,kw", SUBNORMAL, ids=[str(kw) for _, kw in SUBNORMAL])
def test_subnormal_numbers(images, image, kw):
    got = [tool(images, image, kw), descriptor(images, image, kw)]
    py = python(image, kw)
    if py is not None:
        got.append(py)
    for g in got:
        assert "error" not in g, (kw, g)
    assert all(g == got[0] for g in got), got
    key = next(k for k in kw if k in ("scale", "offset"))
    assert got[0]["options"][key] == float(kw[key]) != 0


def test_unknown_source_format(images, tmp_path):
    """A source in no image format: each front end says how to give a raw
    file in its own spelling (the tool's options, the descriptor's keys)."""
    if not EXE or not DUMP:
        pytest.skip("PATCHMAP_EXE or PATCHMAP_DESC_DUMP not given")
    (tmp_path / "notes.txt").write_text("hello, world\n")
    p = subprocess.run([EXE, "info", str(tmp_path / "notes.txt"), "--window", "3"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode and "--shape and --raw-dtype" in p.stderr, p.stderr
    (tmp_path / "n.patchmap").write_text("source = notes.txt\nwindow = 3\n")
    p = subprocess.run([DUMP, str(tmp_path / "n.patchmap")], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode and "shape and raw_dtype" in p.stderr, p.stderr
    assert "--shape" not in p.stderr and "--raw-dtype" not in p.stderr, p.stderr


@pytest.mark.parametrize("value", ["u8", "I8"])
def test_ambiguous_dtype_one_wording(images, tmp_path, value):
    """dtype (the matrix's) and raw_dtype (a raw file's samples) refuse "u8"
    and "i8" in the same words, in the tool and in a descriptor."""
    if not EXE or not DUMP:
        pytest.skip("PATCHMAP_EXE or PATCHMAP_DESC_DUMP not given")
    (tmp_path / "s.raw").write_bytes(bytes(120))
    msgs = {}
    for key in ("dtype", "raw_dtype"):
        kw = {"shape": "10x12", "raw_dtype": "uint8", "window": "3", key: value}
        args = [EXE, "info", str(tmp_path / "s.raw"), "--json"]
        for k, v in kw.items():
            args += ["--" + k.replace("_", "-"), v]
        p = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert p.returncode
        t = json.loads(p.stdout)["error"]
        (tmp_path / "a.patchmap").write_text(
            "source = s.raw\n" + "".join("%s = %s\n" % kv for kv in kw.items()))
        p = subprocess.run([DUMP, str(tmp_path / "a.patchmap")], capture_output=True,
                           text=True, timeout=60)
        d = json.loads(p.stdout)["error"]
        assert same_message(d, t), (d, t)
        msgs[key] = d
    assert msgs["raw_dtype"] == "raw_" + msgs["dtype"], msgs
    big = "uint64" if value[0] in "uU" else "int64"
    assert "'%s' is ambiguous" % value in msgs["dtype"] and big in msgs["dtype"], msgs


def test_raw_offset_too_large(tmp_path):
    """A raw_offset past what a size holds is too large, not 'not a byte
    count', in the tool and in a descriptor alike."""
    if not EXE or not DUMP:
        pytest.skip("PATCHMAP_EXE or PATCHMAP_DESC_DUMP not given")
    (tmp_path / "z.raw").write_bytes(bytes(100))
    kw = {"shape": "10x10", "raw_dtype": "u1", "raw_offset": "18446744073709551615",
          "window": "3"}
    args = [EXE, "info", str(tmp_path / "z.raw"), "--json"]
    for k, v in kw.items():
        args += ["--" + k.replace("_", "-"), v]
    t = json.loads(subprocess.run(args, capture_output=True, text=True, timeout=60).stdout)
    (tmp_path / "z.patchmap").write_text(
        "source = z.raw\n" + "".join("%s = %s\n" % kv for kv in kw.items()))
    p = subprocess.run([DUMP, str(tmp_path / "z.patchmap")], capture_output=True, text=True,
                       timeout=60)
    d = json.loads(p.stdout)
    for m in (t["error"], d["error"]):
        assert "raw_offset: '18446744073709551615' is a byte count too large" in m, m
        assert "not a byte count" not in m, m


def test_python_column():
    """Says whether Python took part: until the package has describe(), the
    tables compare the tool and the descriptors only."""
    if python_module() is None:
        pytest.skip("the Python package has no patchmap.describe() yet: the tool and the "
                    "descriptors are compared, Python is not")


# ------------------------------------------------------------------ image keys
#
# page, level, bands, image_budget and image_chunk (doc/options.md, "Keys of
# the front ends") on files libvips reads: the tool's --page ..., a
# descriptor's page = ..., Python's patchmap.imread(path, page=...) as the
# source of patchmap.describe. Written here with `vips` itself.

IMAGE_KEYS = os.environ.get("PATCHMAP_GRAMMAR_IMAGES") == "1"

# Python's name of an image key: imread's budget and chunk are the image's.
IMREAD_NAME = {"image_budget": "budget", "image_chunk": "chunk"}


@pytest.fixture(scope="module")
def vimages(tmp_path_factory):
    if not IMAGE_KEYS:
        pytest.skip("PATCHMAP_GRAMMAR_IMAGES is not 1 (no libvips, or a sanitizer build)")
    d = tmp_path_factory.mktemp("vgrammar")
    rgb = (np.arange(40 * 56 * 3) % 253).astype(np.uint8).reshape(40, 56, 3)
    rgb.tofile(d / "rgb.raw")

    def vips(*args):
        subprocess.run(["vips", *map(str, args)], check=True, capture_output=True)

    vips("rawload", d / "rgb.raw", d / "rgb.v", 56, 40, 3)
    # a pyramid of 3 levels: 56x40, 28x20, 14x10 (tiles of 16 stop it there)
    vips("tiffsave", d / "rgb.v", d / "pyr.tif", "--tile", "--pyramid", "--tile-width", 16,
         "--tile-height", 16)
    vips("pngsave", d / "rgb.v", d / "one.png")
    np.save(d / "gray.npy", IMAGES["gray"])
    return d, rgb


def vtool(d, name, kw):
    args = [EXE, "info", str(d / name), "--json"]
    for k, v in kw.items():
        args += ["--" + k.replace("_", "-"), v]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    rep = json.loads(p.stdout)
    if p.returncode:
        # 2: a value the grammar refuses (usage); 1: one the file refuses
        assert rep["exit"] == p.returncode in (1, 2), (p.returncode, rep)
        assert p.stderr == f"patchmap: {rep['error']}\n"
        return {"error": rep["error"]}
    return {"options": rep["options"], "matrix": rep["matrix"], "image": rep["image"],
            "rows": rep["rows"]}


def vdescriptor(d, name, kw, n=[0]):
    n[0] += 1
    path = d / f"v{n[0]}.patchmap"
    path.write_text(f"source = {name}\n" + "".join(f"{k} = {v}\n" for k, v in kw.items()))
    p = subprocess.run([DUMP, str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 1), p.stderr
    rep = json.loads(p.stdout)
    if p.returncode:
        return {"error": rep["error"], "line": rep["line"]}
    return rep


def vpython(d, name, kw):
    pm = python_module()
    if pm is None:
        return None
    kw = dict(kw)
    window = kw.pop("window")
    opened = {IMREAD_NAME.get(k, k): kw.pop(k) for k in list(kw)
              if k in ("page", "level", "bands", "image_budget", "image_chunk")}
    try:
        img = pm.imread(d / name, **opened)
        rep = pm.describe(img, window, **kw)
    except (ValueError, TypeError, OSError) as e:
        return {"error": str(e)}
    return {"options": rep["options"], "matrix": rep["matrix"], "shape": img.shape,
            "rows": rep["rows"]}


# (file, group of spellings of one meaning)
VGOOD = [
    ("pyr.tif", [{"window": "3", "level": "1"}, {"window": "3", "level": " 1 "},
                 {"window": "3", "level": "01"}]),
    ("pyr.tif", [{"window": "3"}, {"window": "3", "level": "0"}, {"window": "3", "page": "0"}]),
    ("pyr.tif", [{"window": "2", "level": "2", "bands": "2,0"},
                 {"window": "2", "level": "2", "bands": "2, 0"},
                 {"window": "2", "level": "2", "bands": " 2 ,0 "}]),
    ("pyr.tif", [{"window": "3", "bands": "1"}]),
    ("pyr.tif", [{"window": "3", "image_budget": "1M", "image_chunk": "64K"},
                 {"window": "3", "image_budget": "1024K", "image_chunk": "65536"},
                 {"window": "3", "image_budget": "unlimited"}]),
    ("one.png", [{"window": "4", "page": "0", "bands": "0,1,2"}, {"window": "4"}]),
]

# (file, {key: value}, the key named, a text the message holds)
VBAD = [
    ("pyr.tif", {"window": "3", "level": "3"}, "level",
     "level: '3' is not a level of the image, which has 3 levels (0 to 2)"),
    ("pyr.tif", {"window": "3", "level": "two"}, "level", "is not a pyramid level"),
    ("pyr.tif", {"window": "3", "level": "-1"}, "level", "is not a pyramid level"),
    ("pyr.tif", {"window": "3", "bands": "3"}, "bands",
     "bands: band 3 is not a band of the image, which has 3 bands (0 to 2)"),
    ("pyr.tif", {"window": "3", "bands": "0,,1"}, "bands", "is not a list of band numbers"),
    ("pyr.tif", {"window": "3", "bands": "red"}, "bands", "is not a list of band numbers"),
    ("one.png", {"window": "3", "page": "1"}, "page",
     "page: '1' is not a page of the image, which has 1 page (0 to 0)"),
    ("pyr.tif", {"window": "3", "page": "1.5"}, "page", "is not a page number"),
    ("pyr.tif", {"window": "3", "image_budget": "lots"}, "image_budget", "is not a byte count"),
    ("pyr.tif", {"window": "3", "image_budget": "0"}, "image_budget", "is not a byte count"),
    ("pyr.tif", {"window": "3", "image_budget": "4K"}, "image_budget", "two chunks"),
    ("pyr.tif", {"window": "3", "image_chunk": "5000"}, "image_chunk", "power of two"),
    ("gray.npy", {"window": "3", "level": "1"}, "level",
     "level: only for an image file libvips reads, not a .npy file"),
]


@pytest.mark.parametrize("name,group", VGOOD, ids=[f"{n}-{g[0]}" for n, g in VGOOD])
def test_image_keys_good(vimages, name, group):
    d, _ = vimages
    first = None
    for kw in group:
        t, ds, py = vtool(d, name, kw), vdescriptor(d, name, kw), vpython(d, name, kw)
        assert "error" not in t and "error" not in ds, (kw, t, ds)
        got = {"options": t["options"], "matrix": t["matrix"], "rows": t["rows"]}
        assert ds == got, (kw, ds, got)
        if py is not None:
            assert "error" not in py, (kw, py)
            assert {"options": py["options"], "matrix": py["matrix"],
                    "rows": py["rows"]} == got, (kw, py, got)
            assert list(py["shape"]) == t["image"]["shape"], (kw, py["shape"], t["image"])
        if first is None:
            first = got
        assert got == first, ("one meaning, many spellings", group[0], kw)


def test_image_keys_mean_what_they_say(vimages):
    """level 1 halves the image, bands picks and orders the channels, and
    the tool names what it opened: not three front ends agreeing on
    something wrong."""
    d, rgb = vimages
    t = vtool(d, "pyr.tif", {"window": "3", "level": "1"})
    assert t["image"]["shape"] == [20, 28, 3] and t["image"]["levels"] == 3
    assert t["image"]["level"] == 1 and t["image"]["loader"] == "tiffload"
    t = vtool(d, "pyr.tif", {"window": "2", "level": "2", "bands": "2,0"})
    assert t["image"]["shape"] == [10, 14, 2] and t["matrix"]["channels"] == 2
    assert t["matrix"]["out_shape"] == [9, 13]
    pm = python_module()
    if pm is not None:
        img = pm.imread(d / "pyr.tif", bands="2,0")
        assert np.array_equal(img, rgb[:, :, [2, 0]])
        assert np.array_equal(pm.imread(d / "pyr.tif", bands=[1]), rgb[:, :, 1])


@pytest.mark.parametrize("name,kw,key,text", VBAD,
                         ids=[f"{n}-{kw}" for n, kw, _, _ in VBAD])
def test_image_keys_bad(vimages, name, kw, key, text):
    d, _ = vimages
    t, ds = vtool(d, name, kw), vdescriptor(d, name, kw)
    assert "error" in t and "error" in ds, (t, ds)
    assert ds["line"] == 2 + list(kw).index(key), ds
    msg = ds["error"]
    assert msg.startswith(key + ": ") and text in msg, msg
    assert same_message(msg, t["error"]), (msg, t["error"])
    if name.endswith(".npy"):
        return  # imread reads what libvips reads: a .npy is numpy's own
    py = vpython(d, name, kw)
    if py is not None:
        assert "error" in py, py
        pykey = IMREAD_NAME.get(key, key)
        if key in IMREAD_NAME:
            # imread's budget and chunk are the grammar's budget and chunk
            assert pykey + ": " in py["error"], py["error"]
            return
        assert msg in py["error"], (msg, py["error"])
        assert py["error"].startswith("patchmap.imread"), py["error"]
        assert pykey in py["error"], py["error"]
# ------------------------------------------------------------------ row selections

# Files of window numbers and masks, for the front-end keys rows and mask
# (gray, window 3: out_shape 8x10, 80 windows).
SELECTION_FILES = {
    "idx.npy": np.array([5, 0, 5, 79, 33], dtype=np.int32),
    "idx2d.npy": np.array([[1, 2], [78, 1]], dtype=np.uint16),
    "big.npy": np.array([5, 80], dtype=np.int64),
    "neg.npy": np.array([5, -1], dtype=np.int8),
    "flt.npy": np.array([1.0, 2.0]),
    "empty.npy": np.array([], dtype=np.int64),
    "m.npy": np.eye(8, 10, dtype=bool),
    "m_wrong.npy": np.ones((8, 9), dtype=bool),
    "m_u8.npy": np.ones((8, 10), dtype=np.uint8),
    "m_none.npy": np.zeros((8, 10), dtype=bool),
}


@pytest.fixture(scope="module")
def selfiles(images):
    for name, arr in SELECTION_FILES.items():
        np.save(images / name, arr)
    # a PGM mask: P5 of width 10, height 8, the transpose pattern of m.npy
    pgm = (np.arange(80).reshape(8, 10) % 7 == 0).astype(np.uint8) * 255
    (images / "m.pgm").write_bytes(b"P5\n10 8\n255\n" + pgm.tobytes())
    return images


def python_selection(kw, images):
    """The keyword arguments Python takes for the front ends' keys."""
    kw = dict(kw)
    for k in ("rows", "mask"):
        if k in kw:
            path = images / kw[k]
            if kw[k].endswith(".pgm"):
                raw = path.read_bytes()
                kw[k] = np.frombuffer(raw[-80:], np.uint8).reshape(8, 10) != 0
            else:
                kw[k] = np.load(path)
    if "sample" in kw:
        v = kw["sample"]
        kw["sample"] = float(v) if "." in v else int(v)
    if "seed" in kw:
        kw["random_state"] = int(kw.pop("seed"))
    return kw


SEL_GOOD = [
    {"rows": "idx.npy"}, {"rows": "idx2d.npy"}, {"mask": "m.npy"}, {"mask": "m.pgm"},
]


@pytest.mark.parametrize("kw", SEL_GOOD, ids=[str(k) for k in SEL_GOOD])
def test_selection_keys(selfiles, kw):
    """rows and mask name the same windows in every front end."""
    kw = {"window": "3", **kw}
    t, d = tool(selfiles, "gray", kw), descriptor(selfiles, "gray", kw)
    assert "error" not in t and t == d, (t, d)
    pm = python_module()
    if pm is not None:
        pkw = python_selection(kw, selfiles)
        rep = pm.describe(IMAGES["gray"], pkw.pop("window"), **pkw)
        assert rep == t, (rep, t)
    # and what the report says is the selection numpy makes
    idx = {"idx.npy": SELECTION_FILES["idx.npy"].ravel(),
           "idx2d.npy": SELECTION_FILES["idx2d.npy"].ravel(),
           "m.npy": np.flatnonzero(SELECTION_FILES["m.npy"]),
           "m.pgm": np.flatnonzero(np.arange(80) % 7 == 0)}[kw.get("rows") or kw.get("mask")]
    assert t["matrix"]["rows"] == idx.size == t["rows"]["count"]
    assert t["rows"]["checksum"] == int((np.arange(1, idx.size + 1) * idx).sum()) % 2**64


def test_sample_keys(selfiles):
    """sample and seed: the tool and a descriptor draw the same windows."""
    for kw in ({"sample": "7", "seed": "3"}, {"sample": "0.25"}, {"sample": "80", "seed": "0"}):
        kw = {"window": "3", **kw}
        t, d = tool(selfiles, "gray", kw), descriptor(selfiles, "gray", kw)
        assert "error" not in t and t == d, (kw, t, d)
        n = int(float(kw["sample"]) * 80) if "." in kw["sample"] else int(kw["sample"])
        assert t["rows"]["kind"] == "sample" and t["rows"]["count"] == n == t["matrix"]["rows"]
    # another seed, another draw
    a = tool(selfiles, "gray", {"window": "3", "sample": "7", "seed": "3"})
    b = tool(selfiles, "gray", {"window": "3", "sample": "7", "seed": "4"})
    assert a["rows"]["checksum"] != b["rows"]["checksum"]


# (keys, the key the message names, the message's words); every front end
# refuses them, the tool and the descriptors with the same message.
SEL_BAD = [
    ({"rows": "big.npy"}, "rows", "window number 80 at position 1 is past the last window "
                                  "(80 windows, out_shape 8x10): give numbers below 80"),
    ({"rows": "neg.npy"}, "rows", "window number -1 at position 1 is negative"),
    ({"rows": "flt.npy"}, "rows", "not a .npy of integer window numbers"),
    ({"rows": "empty.npy"}, "rows", "selects no window"),
    ({"mask": "m_wrong.npy"}, "mask", "has shape 8x9; it must have the windows' out_shape "
                                      "8x10 (80 windows)"),
    ({"mask": "m_u8.npy"}, "mask", "holds uint8, not bool"),
    ({"mask": "m_none.npy"}, "mask", "selects no window (it is all false)"),
    ({"sample": "81"}, "sample", "sample: 81 is more than the 80 windows, out_shape 8x10: "
                                 "give at most 80"),
    ({"sample": "0.001"}, "sample", "sample: 0.001 of the 80 windows, out_shape 8x10 is no "
                                    "window: give a larger fraction or a count"),
    ({"sample": "0"}, "sample", "is not a count of windows (such as 1000) or a fraction"),
    ({"sample": "1.5"}, "sample", "is not a count of windows (such as 1000) or a fraction"),
    ({"seed": "3"}, "seed", "only with sample, whose draw it seeds"),
    ({"seed": "-3", "sample": "2"}, "seed", "is not a whole number from 0 to 2^64 - 1"),
    ({"rows": "idx.npy", "sample": "2"}, "sample", "give one of row_range, rows, mask and "
                                                   "sample, not rows and sample"),
    ({"row_range": "1:3", "mask": "m.npy"}, "mask", "give one of row_range, rows, mask and "
                                                    "sample, not row_range and mask"),
    ({"rows": "idx.npy", "layout": "cols"}, "rows", "a row selection needs layout rows"),
]


@pytest.mark.parametrize("kw,key,words", SEL_BAD, ids=[str(k) for k, _, _ in SEL_BAD])
def test_selection_refused(selfiles, kw, key, words):
    kw = {"window": "3", **kw}
    t, d = tool(selfiles, "gray", kw), descriptor(selfiles, "gray", kw)
    assert "error" in t and "error" in d, (t, d)
    assert d["line"] == 2 + list(kw).index(key), d
    assert d["error"].startswith(key + ": ") and words in d["error"], d
    assert same_message(d["error"], t["error"]), (d, t)
    pm = python_module()
    if pm is None or key == "seed" and "-3" in kw["seed"]:
        return  # Python's seed is scikit-learn's random_state
    pkw = python_selection(kw, selfiles)
    with pytest.raises((ValueError, TypeError, IndexError)) as e:
        pm.describe(IMAGES["gray"], pkw.pop("window"), **pkw)
    msg = str(e.value)
    pkey = "random_state" if key == "seed" else key
    assert (pkey + ": ") in msg, msg
    tail = words.replace(".npy of integer window numbers", "") if key == "rows" else words
    if key in ("rows", "mask") and "give one" not in words:
        tail = {"not a .npy of integer window numbers": "must be integers",
                "holds uint8, not bool": "holds uint8, not bool"}.get(words, words)
    assert tail in msg, (tail, msg)


# ------------------------------------------------------------------ the selected matrix itself

def reference(image, window):
    from numpy.lib.stride_tricks import sliding_window_view
    return sliding_window_view(image, (window, window)).reshape(-1, window * window)


def splitmix_sample(n, windows, seed):
    """The tool's sampler, as doc/options.md writes it."""
    M = 2**64 - 1
    s, out, limit = seed, [], 2**64 - 2**64 % windows
    while len(out) < n:
        s = (s + 0x9e3779b97f4a7c15) & M
        z = s
        z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
        z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
        x = z ^ (z >> 31)
        if x < limit:
            out.append(x % windows)
    return np.array(out)


@pytest.mark.parametrize("backend", ["none", "uffd", "sigsegv", "eager"])
def test_tool_export_selection(selfiles, backend, tmp_path):
    if not EXE:
        pytest.skip("PATCHMAP_EXE does not name the patchmap binary")
    F = reference(IMAGES["gray"], 3).astype(np.float32)
    cases = [
        (["--rows", str(selfiles / "idx.npy")], F[SELECTION_FILES["idx.npy"]]),
        (["--mask", str(selfiles / "m.npy")], F[SELECTION_FILES["m.npy"].ravel()]),
        (["--row-range", "3:9"], F[3:9]),
        (["--sample", "9", "--seed", "11"], F[splitmix_sample(9, 80, 11)]),
        (["--sample", "0.5", "--seed", "0"], F[splitmix_sample(40, 80, 0)]),
    ]
    for args, want in cases:
        out = tmp_path / "x.npy"
        cmd = [EXE, "export", str(selfiles / "gray.npy"), "--window", "3", "--out", str(out),
               "--quiet", "--chunk", "4K", "--budget", "40K"] + args
        if backend != "none":
            cmd += ["--backend", backend]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if p.returncode and "not available" in p.stderr:
            pytest.skip(p.stderr)
        assert p.returncode == 0, p.stderr
        got = np.load(out)
        assert got.dtype == want.dtype and np.array_equal(got, want), args
        out.unlink()


def test_tool_refuses_and_writes_nothing(selfiles, tmp_path):
    if not EXE:
        pytest.skip("PATCHMAP_EXE does not name the patchmap binary")
    for args in (["--rows", str(selfiles / "big.npy")], ["--mask", str(selfiles / "m_wrong.npy")],
                 ["--sample", "81"], ["--row-range", "5:81"]):
        for cmd in ("export", "apply"):
            out = tmp_path / "o.npy"
            extra = ["--random", "2"] if cmd == "apply" else []
            p = subprocess.run([EXE, cmd, str(selfiles / "gray.npy"), "--window", "3", "--out",
                                str(out)] + extra + args, capture_output=True, text=True,
                               timeout=60)
            assert p.returncode != 0 and p.stderr.count("\n") == 1, p.stderr
            assert not out.exists() and not list(tmp_path.iterdir()), (cmd, args)


def test_tool_apply_selection(selfiles, tmp_path):
    if not EXE:
        pytest.skip("PATCHMAP_EXE does not name the patchmap binary")
    F = reference(IMAGES["gray"], 3).astype(np.float64)
    flt = tmp_path / "f.npy"
    filters = np.arange(2 * 9, dtype=np.float64).reshape(2, 9) - 4
    np.save(flt, filters)
    out = tmp_path / "o.npy"
    p = subprocess.run([EXE, "apply", str(selfiles / "gray.npy"), "--window", "3", "--filters",
                        str(flt), "--dtype", "f64", "--out", str(out), "--quiet", "--rows",
                        str(selfiles / "idx.npy")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    got = np.load(out)
    assert got.shape == (2, 5)
    assert np.array_equal(got, filters @ F[SELECTION_FILES["idx.npy"]].T)


def test_python_selected_matrix(selfiles):
    pm = python_module()
    if pm is None:
        pytest.skip("the Python package is not importable here")
    g = IMAGES["gray"]
    F = reference(g, 3).astype(np.float32)
    for backend in ("uffd", "sigsegv", "eager"):
        o = {"backend": backend, "chunk": "4K", "budget": "8K"}
        try:
            X = pm.windows(g, 3, rows=SELECTION_FILES["idx2d.npy"], **o)
        except OSError as e:  # a backend this machine refuses
            if "uffd" in backend:
                continue
            raise
        assert np.array_equal(X, F[SELECTION_FILES["idx2d.npy"].ravel()])
        assert np.array_equal(pm.windows(g, 3, mask=SELECTION_FILES["m.npy"], **o),
                              F[SELECTION_FILES["m.npy"].ravel()])
        assert np.array_equal(pm.windows(g, 3, row_range=(3, 9), **o), F[3:9])
        assert np.array_equal(pm.windows(g, 3, row_range=slice(70, None), **o), F[70:])


def test_python_sample_is_scikit_learns():
    """windows(sample=, random_state=) equals extract_patches_2d(max_patches=,
    random_state=) reshaped, bit for bit, on gray and colour images, for
    counts, fractions and seeds."""
    pm = python_module()
    if pm is None:
        pytest.skip("the Python package is not importable here")
    skl = pytest.importorskip("sklearn.feature_extraction.image")
    rng = np.random.RandomState(5)
    images = [rng.rand(23, 17).astype(np.float32), (rng.rand(19, 21, 3) * 255).astype(np.uint8)]
    for img in images:
        for patch in ((3, 3), (4, 7)):
            for n, seed in ((1, 0), (25, 1), (0.1, 42), (0.5, 7), (100, 123)):
                want = skl.extract_patches_2d(img, patch, max_patches=n, random_state=seed)
                got = pm.windows(img, patch, sample=n, random_state=seed, dtype="same")
                assert got.shape == (want.shape[0], want[0].size)
                assert np.array_equal(got, want.reshape(want.shape[0], -1)), (img.shape, n, seed)
    # a RandomState object is advanced as scikit-learn advances it
    a, b = np.random.RandomState(3), np.random.RandomState(3)
    img = images[0]
    for _ in range(3):
        want = skl.extract_patches_2d(img, (3, 3), max_patches=5, random_state=a)
        got = pm.windows(img, (3, 3), sample=5, random_state=b, dtype="same")
        assert np.array_equal(got, want.reshape(5, -1))
