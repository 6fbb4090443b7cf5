"""patchmap apply against an explicit correlation in numpy (float64, no
patch matrix): random filters within float tolerance, integer filters on
integer images exactly."""

import json

import numpy as np
import pytest

from conftest import correlate, run, write_npy, write_pnm, write_raw

RNG = np.random.default_rng(99)


def apply(exe, tmp_path, image, *opts):
    out = tmp_path / "resp.npy"
    run(exe, "apply", image, "--out", out, "--quiet", *opts)
    return np.load(out)


def close(got, want, img, filters, rtol=1e-5):
    """float32 GEMM against float64: the error of a sum of products is
    bounded by a few ulps of sum |f| |x|."""
    scale = np.abs(np.asarray(filters, np.float64)).reshape(len(filters), -1).sum(axis=1)
    scale = scale * float(np.abs(img.astype(np.float64)).max() or 1)
    assert got.shape == want.shape
    err = np.abs(got - want).reshape(len(filters), -1).max(axis=1)
    assert (err <= rtol * scale).all(), (err, scale)


def int_filters(n, shape):
    return RNG.integers(-8, 9, (n,) + tuple(shape)).astype(np.float32)


def test_random_filters_pgm(exe, tmp_path):
    img = RNG.integers(0, 256, (40, 37)).astype(np.uint8)
    path = write_pnm(tmp_path / "img.pgm", img, comments=True)
    saved = tmp_path / "filters.npy"
    got = apply(exe, tmp_path, path, "--window", "6x5", "--random", "7", "--seed", "3",
                "--save-filters", saved)
    f = np.load(saved)
    assert f.shape == (7, 30) and f.dtype == np.float32
    assert (f >= -1).all() and (f < 1).all() and len(np.unique(f)) > 200
    want = correlate(img, f.reshape(7, 6, 5), (6, 5))
    assert got.dtype == np.float32 and got.shape == (7, 35, 33)
    close(got, want, img, f)
    # the seed decides the filters
    again = tmp_path / "again.npy"
    apply(exe, tmp_path, path, "--window", "6x5", "--random", "7", "--seed", "3",
          "--save-filters", again)
    assert np.array_equal(np.load(again), f)
    other = tmp_path / "other.npy"
    apply(exe, tmp_path, path, "--window", "6x5", "--random", "7", "--seed", "4",
          "--save-filters", other)
    assert not np.array_equal(np.load(other), f)


@pytest.mark.parametrize("maxval", [255, 65535])
def test_integer_filters_exact(exe, tmp_path, maxval):
    """Integer taps on integer pixels: every product and partial sum is an
    integer below 2^24, so float32 must be exact."""
    dtype = np.uint8 if maxval < 256 else np.uint16
    img = RNG.integers(0, min(maxval, 255) + 1, (33, 29)).astype(dtype)
    path = write_pnm(tmp_path / "img.pgm", img, maxval=maxval)
    f = int_filters(5, (4, 7))
    fpath = write_npy(tmp_path / "f.npy", f)
    got = apply(exe, tmp_path, path, "--window", "4x7", "--filters", fpath)
    assert np.array_equal(got, correlate(img, f, (4, 7)))


@pytest.mark.parametrize("fdtype", ["int64", "uint64", "bool", "float16", "int8"])
def test_filters_of_numpy_default_dtypes(exe, tmp_path, fdtype):
    """numpy's default int64 filters (and bool, float16, ...) are converted
    as astype converts them: an int64 bank once gave all zeros."""
    img = RNG.integers(0, 256, (19, 23)).astype(np.int64)
    path = write_npy(tmp_path / "img.npy", img)
    f = np.abs(int_filters(3, (3, 4)))  # unsigned dtypes too
    f = f % 2 == 1 if fdtype == "bool" else f
    f = f.astype(fdtype)
    fpath = write_npy(tmp_path / "f.npy", f)
    got = apply(exe, tmp_path, path, "--window", "3x4", "--filters", fpath)
    want = correlate(img, f.astype(np.float64), (3, 4))
    assert np.abs(want).max() > 0 and np.array_equal(got, want)


@pytest.mark.parametrize("order", ["window", "channel"])
def test_ppm_shaped_filters(exe, tmp_path, order):
    """(N, h, w, c) filters follow the window, whatever the column order."""
    img = RNG.integers(0, 256, (21, 24, 3)).astype(np.uint8)
    path = write_pnm(tmp_path / "img.ppm", img)
    f = int_filters(4, (3, 5, 3))
    fpath = write_npy(tmp_path / "f.npy", f, fortran=True)
    got = apply(exe, tmp_path, path, "--window", "3x5", "--filters", fpath, "--order", order)
    assert np.array_equal(got, correlate(img, f, (3, 5), channels=True))


def test_flat_filters_follow_column_order(exe, tmp_path):
    """(N, K) filters are rows in the matrix's column order."""
    img = RNG.integers(0, 256, (15, 16, 2)).astype(np.uint8)
    path = write_npy(tmp_path / "img.npy", img)
    f = int_filters(3, (4, 3, 2))
    want = correlate(img, f, (4, 3), channels=True)
    flat_window = write_npy(tmp_path / "fw.npy", f.reshape(3, -1))
    flat_channel = write_npy(tmp_path / "fc.npy", np.moveaxis(f, 3, 1).reshape(3, -1))
    assert np.array_equal(apply(exe, tmp_path, path, "--window", "4x3", "--filters",
                                flat_window), want)
    assert np.array_equal(apply(exe, tmp_path, path, "--window", "4x3", "--filters",
                                flat_channel, "--order", "channel"), want)


def test_f64(exe, tmp_path):
    img = RNG.standard_normal((25, 22)).astype(np.float64)
    path = write_npy(tmp_path / "img.npy", img)
    f = RNG.standard_normal((6, 5, 4))
    fpath = write_npy(tmp_path / "f.npy", f)
    got = apply(exe, tmp_path, path, "--window", "5x4", "--filters", fpath, "--dtype", "f64")
    assert got.dtype == np.float64
    close(got, correlate(img, f, (5, 4)), img, f, rtol=1e-13)


@pytest.mark.parametrize("mode", ["zero", "constant:3", "edge", "reflect", "symmetric", "wrap"])
def test_step_dilation_padding(exe, tmp_path, mode):
    img = RNG.integers(0, 256, (26, 30)).astype(np.uint8)
    path = write_raw(tmp_path / "img.raw", img)
    f = int_filters(3, (3, 4))
    fpath = write_npy(tmp_path / "f.npy", f.astype(np.int16))  # any readable dtype
    name, _, value = mode.partition(":")
    got = apply(exe, tmp_path, path, "--shape", "26x30", "--window", "3x4", "--step", "2x3",
                "--dilation", "3x2", "--pad-mode", name, *(["--pad-value", value] if value else []),
                "--pad", "4,2x5", "--filters", fpath)
    want = correlate(img, f, (3, 4), step=(2, 3), dilation=(3, 2), pads=[(4, 4), (2, 5)],
                     mode=name, value=int(value or 0))
    assert np.array_equal(got, want)


def test_volume(exe, tmp_path):
    img = RNG.integers(0, 256, (9, 8, 10)).astype(np.uint8)
    path = write_npy(tmp_path / "vol.npy", img)
    f = int_filters(2, (3, 2, 4))
    fpath = write_npy(tmp_path / "f.npy", f)
    got = apply(exe, tmp_path, path, "--window", "3x2x4", "--filters", fpath)
    assert got.shape == (2, 7, 7, 7)
    assert np.array_equal(got, correlate(img, f, (3, 2, 4)))


@pytest.mark.parametrize("backend", ["uffd", "sigsegv", "eager"])
def test_backends_small_budget(exe, tmp_path, backend):
    """Many blocks and evictions: a 3.6 MB matrix under a 256 KiB budget."""
    img = RNG.integers(0, 256, (70, 80)).astype(np.uint8)
    path = write_npy(tmp_path / "img.npy", img)
    f = int_filters(9, (12, 12))
    fpath = write_npy(tmp_path / "f.npy", f)
    out = tmp_path / "r.npy"
    rep = json.loads(run(exe, "apply", path, "--window", "12", "--filters", fpath, "--out", out,
                         "--backend", backend, "--budget", "256K", "--chunk", "32K",
                         "--blas-threads", "2", "--json").stdout)
    assert np.array_equal(np.load(out), correlate(img, f, (12, 12)))
    assert rep["output"]["shape"] == [9, 59, 69]
    assert rep["lazy"]["backend"] == backend
    if backend != "eager":
        assert rep["lazy"]["evictions"] > 0
        assert rep["lazy"]["peak_resident_bytes"] <= 256 << 10
    assert rep["block_rows"] < 59 * 69  # several GEMM blocks
