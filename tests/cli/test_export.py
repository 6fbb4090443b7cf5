"""patchmap export against numpy: the .npy it writes equals
sliding_window_view(...).reshape(...).astype(...) bit for bit, for every
input format, dtype, memory order, window option, backend and budget."""

import io
import json
import subprocess

import numpy as np
import pytest

from conftest import patches, run, write_npy, write_pnm, write_raw

RNG = np.random.default_rng(20240601)
# numpy's 8-byte integers with a byte order: the tool reads a bare u8 as uint8
DTYPES = ["u1", "i1", "u2", "i2", "u4", "i4", "f4", "f8", "<u8", "<i8", "<f2"]


def rand(shape, dtype):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (RNG.standard_normal(shape) * 1000).astype(dt)
    info = np.iinfo(dt)
    return RNG.integers(info.min, info.max, shape, dtype=dt.newbyteorder("="), endpoint=True) \
        .astype(dt)


def export(exe, tmp_path, image, *opts):
    out = tmp_path / "out.npy"
    run(exe, "export", image, "--out", out, "--quiet", *opts)
    with open(out, "rb") as f:
        head = f.read(10)
    hlen = head[8] | head[9] << 8
    assert head[:8] == b"\x93NUMPY\x01\x00" and (10 + hlen) % 64 == 0
    m = np.load(out, mmap_mode="r")
    assert m.flags.c_contiguous
    return np.array(m)


def check(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=want.dtype.kind == "f")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fortran", [False, True], ids=["C", "F"])
def test_npy_dtypes_and_orders(exe, tmp_path, dtype, fortran):
    img = rand((13, 17), dtype)
    path = write_npy(tmp_path / "img.npy", img, fortran=fortran)
    check(export(exe, tmp_path, path, "--window", "4x3"), patches(img, (4, 3))[0])
    # the source's own dtype, no conversion
    check(export(exe, tmp_path, path, "--window", "3x5", "--dtype", "same"),
          patches(img, (3, 5), dtype=img.dtype)[0])


@pytest.mark.parametrize("dtype", [">u2", ">i2", ">u4", ">i4", ">f4", ">f8", ">u8", ">i8", ">f2"])
def test_npy_big_endian(exe, tmp_path, dtype):
    img = rand((9, 11), dtype)
    path = write_npy(tmp_path / "img.npy", img)
    check(export(exe, tmp_path, path, "--window", "3x3", "--dtype", "f64"),
          patches(img, (3, 3), dtype=np.float64)[0])


def test_npy_bool(exe, tmp_path):
    img = RNG.integers(0, 2, (10, 12)).astype(bool)
    path = write_npy(tmp_path / "img.npy", img)
    check(export(exe, tmp_path, path, "--window", "2x3"), patches(img, (2, 3))[0])
    check(export(exe, tmp_path, path, "--window", "2x3", "--dtype", "same"),
          patches(img, (2, 3), dtype=bool)[0])


def test_npy_int64_rounding(exe, tmp_path):
    """numpy's default integer, with values a float32 or float64 rounds:
    the library rounds once, as astype does."""
    base = np.array([2**24 + 1, 2**53 + 1, 2**60 + 2**36 + 1, -(2**60 + 2**36 + 1),
                     2**63 - 1, -2**63, 2**60 + 3 * 2**36, 2**60 + 2**7 + 1], np.int64)
    img = np.concatenate([base, rand((24,), "i8")]).reshape(4, 8)
    path = write_npy(tmp_path / "img.npy", img)
    for dt, want in (("f32", np.float32), ("f64", np.float64), ("same", np.int64)):
        check(export(exe, tmp_path, path, "--window", "2x2", "--dtype", dt),
              patches(img, (2, 2), dtype=want)[0])
    u = img.view(np.uint64)
    path = write_npy(tmp_path / "img.npy", u)
    check(export(exe, tmp_path, path, "--window", "2x2"), patches(u, (2, 2))[0])


@pytest.mark.parametrize("fortran", [False, True], ids=["C", "F"])
@pytest.mark.parametrize("order", ["window", "channel"])
def test_npy_channels_last(exe, tmp_path, fortran, order):
    img = rand((11, 10, 3), "i2")
    path = write_npy(tmp_path / "img.npy", img, fortran=fortran)
    check(export(exe, tmp_path, path, "--window", "3x4", "--order", order),
          patches(img, (3, 4), channels=True, order=order)[0])
    # one number: a square window over the spatial axes, channels last
    check(export(exe, tmp_path, path, "--window", "2", "--order", order),
          patches(img, (2, 2), channels=True, order=order)[0])


def test_npy_volume(exe, tmp_path):
    """A 3-D image with a 3-axis window: every axis spatial."""
    img = rand((6, 7, 8), "u1")
    path = write_npy(tmp_path / "vol.npy", img, fortran=True)
    check(export(exe, tmp_path, path, "--window", "2x3x2", "--step", "1x2x3"),
          patches(img, (2, 3, 2), step=(1, 2, 3))[0])


@pytest.mark.parametrize("comments", [False, True])
@pytest.mark.parametrize("maxval", [255, 1000, 65535])
def test_pgm(exe, tmp_path, maxval, comments):
    img = RNG.integers(0, maxval + 1, (15, 21)).astype(np.uint8 if maxval < 256 else np.uint16)
    path = write_pnm(tmp_path / "img.pgm", img, maxval=maxval, comments=comments)
    check(export(exe, tmp_path, path, "--window", "5x4"), patches(img, (5, 4))[0])
    check(export(exe, tmp_path, path, "--window", "3x3", "--dtype", "same"),
          patches(img, (3, 3), dtype=img.dtype)[0])


@pytest.mark.parametrize("maxval", [255, 65535])
@pytest.mark.parametrize("order", ["window", "channel"])
def test_ppm(exe, tmp_path, maxval, order):
    img = RNG.integers(0, maxval + 1, (12, 14, 3)).astype(np.uint8 if maxval < 256 else np.uint16)
    path = write_pnm(tmp_path / "img.ppm", img, maxval=maxval, comments=True)
    check(export(exe, tmp_path, path, "--window", "4x3", "--order", order),
          patches(img, (4, 3), channels=True, order=order)[0])


@pytest.mark.parametrize("dtype", DTYPES + [">i2", ">f8"])
def test_raw(exe, tmp_path, dtype):
    img = rand((10, 9), dtype)
    path = write_raw(tmp_path / "img.raw", img)
    check(export(exe, tmp_path, path, "--shape", "10x9", "--raw-dtype", dtype, "--window", "3x2",
                 "--dtype", "f64"),
          patches(img, (3, 2), dtype=np.float64)[0])


def test_raw_channels_and_offset(exe, tmp_path):
    img = rand((8, 7, 2), "f4")
    path = tmp_path / "img.raw"
    with open(path, "wb") as f:
        f.write(b"HEADER!!" + img.tobytes())
    check(export(exe, tmp_path, path, "--shape", "8x7x2", "--raw-dtype", "float32",
                 "--raw-offset", "8", "--window", "3x3"),
          patches(img, (3, 3), channels=True)[0])


@pytest.mark.parametrize("mode,value", [("zero", 0), ("constant", 7), ("edge", 0),
                                        ("reflect", 0), ("symmetric", 0), ("wrap", 0)])
def test_padding_modes(exe, tmp_path, mode, value):
    img = rand((9, 8), "u1")
    path = write_npy(tmp_path / "img.npy", img)
    arg = ["--pad-mode", mode] + (["--pad-value", str(value)] if mode == "constant" else [])
    check(export(exe, tmp_path, path, "--window", "3x4", *arg, "--pad", "2,1x3"),
          patches(img, (3, 4), pads=[(2, 2), (1, 3)], mode=mode, value=value)[0])
    # without --pad: "same", the image's size at step 1
    got = export(exe, tmp_path, path, "--window", "3x4", "--dilation", "2x1", *arg)
    want, shape = patches(img, (3, 4), dilation=(2, 1), pads=[(2, 2), (1, 2)], mode=mode,
                          value=value)
    assert shape == img.shape
    check(got, want)


def test_step_dilation_pad_width(exe, tmp_path):
    img = rand((20, 23), "i4")
    path = write_npy(tmp_path / "img.npy", img)
    check(export(exe, tmp_path, path, "--window", "3x2", "--step", "2x3", "--dilation", "3x2",
                 "--pad", "1x2", "--dtype", "f64"),
          patches(img, (3, 2), step=(2, 3), dilation=(3, 2), pads=[(1, 2), (1, 2)],
                  dtype=np.float64)[0])
    check(export(exe, tmp_path, path, "--window", "4", "--step", "3", "--pad", "2"),
          patches(img, (4, 4), step=(3, 3), pads=[(2, 2), (2, 2)])[0])


@pytest.mark.parametrize("backend", ["auto", "uffd", "sigsegv", "eager"])
def test_lazy_backends_small_budget(exe, tmp_path, backend):
    """Through the lazily filled mapping, with a budget of a few chunks so
    that chunks are evicted and filled again. An explicit auto maps too:
    the backend it picks, never none."""
    img = rand((60, 50), "u2")
    path = write_npy(tmp_path / "img.npy", img)
    out = tmp_path / "out.npy"
    p = run(exe, "export", path, "--window", "7x6", "--out", out, "--backend", backend,
            "--budget", "128K", "--chunk", "16K", "--json")
    rep = json.loads(p.stdout)
    check(np.load(out), patches(img, (7, 6))[0])
    lazy = rep["lazy"]
    assert lazy["backend"] == backend if backend != "auto" else lazy["backend"] != "none"
    if lazy["backend"] != "eager":
        assert lazy["budget_bytes"] <= 128 << 10
        assert lazy["evictions"] > 0
        assert lazy["peak_resident_bytes"] <= lazy["budget_bytes"]


def test_threads_and_pieces(exe, tmp_path):
    """Several writers, pieces far smaller than the matrix."""
    img = rand((80, 90), "f4")
    path = write_npy(tmp_path / "img.npy", img)
    for threads in ("1", "3"):
        check(export(exe, tmp_path, path, "--window", "5x5", "--threads", threads,
                     "--budget", "64K"),
              patches(img, (5, 5))[0])


def test_stdout_into_files(exe, tmp_path):
    """--out - on a shell's `>` and `>>`: the .npy starts where stdout stood,
    several threads write it in place (or in order when appending), the
    report goes to stderr, and what the shell writes next follows it."""
    img = rand((40, 37), "u1")
    path = write_npy(tmp_path / "img.npy", img)
    want = patches(img, (3, 3))[0]
    for mode, prefix in [("w", b""), ("a", b"head\n"), ("r+", b"over\n")]:
        out = tmp_path / ("stdout-" + mode.replace("+", "p"))
        out.write_bytes(prefix + (b"x" * 99 if mode == "r+" else b""))
        with open(out, mode + "b" if mode != "r+" else "r+b") as f:
            f.seek(len(prefix))
            p = subprocess.run([exe, "export", str(path), "--window", "3x3", "--out", "-",
                                "--threads", "4", "--budget", "64K", "--json"],
                               stdout=f, stderr=subprocess.PIPE, timeout=60)
            f.write(b"tail")
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stderr)["command"] == "export"
        data = out.read_bytes()
        assert data.startswith(prefix) and data.endswith(b"tail")
        check(np.load(io.BytesIO(data[len(prefix):-4])), want)


def test_output_through_symlink(exe, tmp_path):
    """An output that is a symlink is written through: the link stays and
    its target (in another directory) gets the matrix."""
    img = rand((9, 8), "u1")
    path = write_npy(tmp_path / "img.npy", img)
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "m.npy"
    target.write_bytes(b"old")
    link = tmp_path / "link.npy"
    link.symlink_to(target)
    run(exe, "export", path, "--window", "2x3", "--out", link, "--quiet")
    assert link.is_symlink() and link.resolve() == target
    check(np.load(target), patches(img, (2, 3))[0])
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["m.npy"]


def test_stdout_and_json(exe, tmp_path):
    """To stdout (a pipe: written in order, one thread), and the JSON report."""
    img = rand((7, 6), "u1")
    path = write_npy(tmp_path / "img.npy", img)
    p = subprocess.run([exe, "export", str(path), "--window", "2x2", "--out", "-", "--quiet"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0 and p.stderr == b""
    check(np.load(io.BytesIO(p.stdout)), patches(img, (2, 2))[0])
    out = tmp_path / "o.npy"
    rep = json.loads(run(exe, "export", path, "--window", "2x2", "--out", out, "--json").stdout)
    assert rep["command"] == "export"
    assert rep["matrix"]["rows"] == 30 and rep["matrix"]["cols"] == 4
    assert rep["output"]["bytes"] == out.stat().st_size
    assert rep["lazy"]["backend"] == "none"
