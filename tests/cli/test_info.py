"""patchmap info: the image as read and the patch matrix's geometry, against
numpy's shapes, for every input format."""

import json

import numpy as np
import pytest

from conftest import patches, run, write_npy, write_pnm, write_raw

RNG = np.random.default_rng(7)


def info(exe, *args):
    return json.loads(run(exe, "info", *args, "--json").stdout)


def check_matrix(rep, want, out_shape, channels=1, itemsize=4):
    m = rep["matrix"]
    assert (m["rows"], m["cols"]) == want.shape
    assert m["ld"] == m["cols"]
    assert m["out_shape"] == list(out_shape)
    assert m["windows"] == m["rows"] and m["window_elems"] == m["cols"]
    assert m["channels"] == channels
    assert m["elem_size"] == itemsize
    assert m["bytes"] == want.shape[0] * want.shape[1] * itemsize


CASES = [
    # name, writer, array, extra args, channels
    ("pgm8", "pgm", np.uint8, (31, 40), [], False),
    ("pgm16", "pgm", np.uint16, (31, 40), [], False),
    ("ppm8", "ppm", np.uint8, (20, 25, 3), [], True),
    ("ppm16", "ppm", np.uint16, (20, 25, 3), [], True),
    ("npy-f4-C", "npy", np.float32, (30, 33), [], False),
    ("npy-i2-F", "npyF", np.int16, (30, 33, 2), [], True),
    ("raw-u2", "raw", np.uint16, (12, 34), ["--shape", "12x34", "--raw-dtype", "u16"], False),
]


@pytest.mark.parametrize("name,kind,dtype,shape,extra,channels", CASES, ids=[c[0] for c in CASES])
def test_formats(exe, tmp_path, name, kind, dtype, shape, extra, channels):
    img = RNG.integers(0, 200, shape).astype(dtype)
    if kind in ("pgm", "ppm"):
        path = write_pnm(tmp_path / f"img.{kind}", img)
    elif kind == "raw":
        path = write_raw(tmp_path / "img.raw", img)
    else:
        path = write_npy(tmp_path / "img.npy", img, fortran=kind == "npyF")
    rep = info(exe, path, *extra)
    assert rep["image"]["shape"] == list(shape)
    assert rep["image"]["dtype"] == np.dtype(dtype).name
    assert rep["image"]["format"] == kind[:3]
    assert rep["image"]["order"] == ("Fortran" if kind == "npyF" else "C")
    assert "matrix" not in rep
    rep = info(exe, path, *extra, "--window", "5x3", "--step", "2x1", "--dilation", "1x2")
    want, out_shape = patches(img, (5, 3), step=(2, 1), dilation=(1, 2), channels=channels)
    check_matrix(rep, want, out_shape, channels=shape[2] if channels else 1)
    assert rep["options"]["channel_axis"] == (len(shape) - 1 if channels else None)
    assert rep["options"]["window"] == [5, 3] and rep["options"]["dilation"] == [1, 2]


@pytest.mark.parametrize("dtype,itemsize", [("f32", 4), ("f64", 8), ("same", 2)])
def test_dtype_and_padding(exe, tmp_path, dtype, itemsize):
    img = RNG.integers(0, 100, (17, 19)).astype(np.int16)
    path = write_npy(tmp_path / "img.npy", img)
    rep = info(exe, path, "--window", "4x6", "--pad-mode", "reflect", "--dtype", dtype)
    want, out_shape = patches(img, (4, 6), pads=[(1, 2), (2, 3)], mode="reflect")
    check_matrix(rep, want, out_shape, itemsize=itemsize)
    assert out_shape == img.shape
    assert rep["options"]["pad_before"] == [1, 2] and rep["options"]["pad_after"] == [2, 3]
    assert rep["options"]["pad_mode"] == "reflect"


def test_text(exe, tmp_path):
    img = np.zeros((512, 512), np.uint8)
    path = write_npy(tmp_path / "img.npy", img)
    out = run(exe, "info", path, "--window", "16x16").stdout
    assert "patch matrix 247009 rows x 256 cols (ld 256), float32: 252937216 bytes" in out
    assert "windows per axis 497x497 (247009 windows), 256 elements per window, 1 channel" in out
    assert out.startswith(f"image {path}: npy, 512x512 uint8 (C order)")
    assert run(exe, "info", path, "--window", "16", "--quiet").stdout == ""


def test_huge_matrix_is_not_touched(exe, tmp_path):
    """A 68 GB matrix is described instantly: nothing is reserved or filled
    (a sparse file stands for the image)."""
    path = tmp_path / "big.raw"
    with open(path, "wb") as f:
        f.truncate(8192 * 8192)
    rep = info(exe, path, "--shape", "8192x8192", "--window", "16x16")
    assert rep["matrix"]["bytes"] == 8177 * 8177 * 256 * 4
    assert rep["matrix"]["out_shape"] == [8177, 8177]


def test_image_through_a_pipe(exe, tmp_path):
    """A pipe is read whole (devices are refused: see test_errors)."""
    import subprocess
    img = RNG.integers(0, 255, (17, 19), dtype=np.uint8)
    data = write_npy(tmp_path / "img.npy", img).read_bytes()
    p = subprocess.run([exe, "info", "/dev/stdin", "--window", "3x4", "--json"], input=data,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["image"]["shape"] == [17, 19] and rep["image"]["file_bytes"] == len(data)
    check_matrix(rep, patches(img, (3, 4))[0], (15, 16))


def test_json_with_a_file_name_that_is_not_utf8(exe, tmp_path):
    """File names are bytes: the report stays valid JSON (U+FFFD for what is
    not UTF-8, the rest kept), and control characters are escaped."""
    import os
    import subprocess
    img = RNG.integers(0, 255, (6, 7), dtype=np.uint8)
    name = b"a\xff\xc3\xa9\xe2\x82\x2e\xf0\x9f\x98\x80\x01.npy"
    path = os.path.join(os.fsencode(tmp_path), name)
    with open(path, "wb") as f:
        np.save(f, img)
    p = subprocess.run([exe, b"info", path, b"--window", b"2", b"--json"], capture_output=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout.decode("utf-8"))  # strict: raises on invalid UTF-8
    assert rep["image"]["path"].endswith("a\ufffd\u00e9\ufffd\ufffd.\U0001f600\x01.npy")


@pytest.mark.parametrize("descr", ["<i8", "<u8", "|b1", "<f2", ">i8", ">f2", "|u1", "<i2", "<f8"])
def test_every_image_dtype(exe, tmp_path, descr):
    """info reads every dtype numpy gives by default (np.arange is int64),
    bool as bool (not uint8), either byte order, and the matrix keeps it
    with --dtype same."""
    dt = np.dtype(descr)
    img = (np.arange(6 * 7) % 2 == 1 if dt.kind == "b" else np.arange(6 * 7)).astype(dt)
    path = write_npy(tmp_path / "img.npy", img.reshape(6, 7))
    rep = info(exe, path, "--window", "2x3", "--dtype", "same")
    assert rep["image"]["dtype"] == dt.name
    assert rep["image"]["converted"] == (dt.byteorder == ">")
    assert rep["matrix"]["dtype"] == dt.name and rep["matrix"]["elem_size"] == dt.itemsize
    assert rep["options"]["dtype"] == dt.name
    check_matrix(rep, patches(img.reshape(6, 7), (2, 3), dtype=dt)[0], (5, 5), itemsize=dt.itemsize)
    text = run(exe, "info", path).stdout
    assert text.startswith(f"image {path}: npy, 6x7 {dt.name} (C order)")
