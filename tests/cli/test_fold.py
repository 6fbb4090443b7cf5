"""patchmap fold against a plain fold written here (one contribution at a
time, through the definition of a window), scikit-learn's
reconstruct_from_patches_2d and torch.nn.functional.fold where importable;
and its refusals, which write nothing."""

import itertools
import json

import numpy as np
import pytest

from conftest import run

RNG = np.random.default_rng(14)


def out_len(n, k, step, dil, pb, pa):
    return (n + pb + pa - (k - 1) * dil - 1) // step + 1


def plain_fold(X, image_shape, k, step, dil, pb, pa, mode, order="window", channels=False,
               rows=None):
    """Sum, mean or count of every window element into its pixel, in matrix
    order, dropping the padding; float64."""
    H, W = image_shape[:2]
    C = image_shape[2] if channels else 1
    oh, ow = out_len(H, k[0], step[0], dil[0], pb[0], pa[0]), out_len(W, k[1], step[1], dil[1],
                                                                      pb[1], pa[1])
    windows = np.arange(oh * ow) if rows is None else np.asarray(rows)
    acc = np.zeros((H, W, C))
    cnt = np.zeros((H, W, C))
    for r, w in enumerate(windows):
        py, px = divmod(int(w), ow)
        col = 0
        idx = (itertools.product(range(k[0]), range(k[1]), range(C)) if order == "window" else
               ((dy, dx, c) for c in range(C) for dy in range(k[0]) for dx in range(k[1])))
        for dy, dx, c in idx:
            y = py * step[0] + dy * dil[0] - pb[0]
            x = px * step[1] + dx * dil[1] - pb[1]
            if 0 <= y < H and 0 <= x < W:
                v = X[r] if X.ndim == 1 else X[r, col] if X.shape[1] == k[0] * k[1] * C else \
                    X[r, c] if X.shape[1] == C else X[r, 0]
                acc[y, x, c] += v
                cnt[y, x, c] += 1
            col += 1
    if mode == "count":
        acc = cnt
    elif mode == "mean":
        acc = np.divide(acc, cnt, out=np.zeros_like(acc), where=cnt > 0)
    return acc if channels else acc[:, :, 0]


def fold(exe, tmp_path, X, *opts, name="m.npy"):
    src = tmp_path / name
    np.save(src, X)
    out = tmp_path / "img.npy"
    run(exe, "fold", src, "--out", out, "--quiet", *opts)
    return np.load(out)


GEOMETRY = [
    # image, window, step, dilation, pad (before x after per axis)
    ((9, 11), (3, 3), (1, 1), (1, 1), None),
    ((9, 11), (2, 3), (2, 1), (1, 2), None),
    ((10, 7), (3, 2), (3, 2), (2, 1), None),
    ((9, 11), (3, 3), (2, 2), (1, 1), "1x2,2x0"),
    ((6, 8, 3), (2, 3), (1, 2), (1, 1), None),
    ((6, 8, 3), (3, 3), (2, 1), (2, 1), "2"),
]


@pytest.mark.parametrize("image,k,step,dil,pad", GEOMETRY)
@pytest.mark.parametrize("mode", ["sum", "mean", "count"])
@pytest.mark.parametrize("order", ["window", "channel"])
def test_fold_against_plain(exe, tmp_path, image, k, step, dil, pad, mode, order):
    channels = len(image) == 3
    C = image[2] if channels else 1
    pads = [(0, 0), (0, 0)]
    if pad == "2":
        pads = [(2, 2), (2, 2)]
    elif pad:
        pads = [tuple(int(v) for v in p.split("x")) for p in pad.split(",")]
    pb, pa = [p[0] for p in pads], [p[1] for p in pads]
    oh = out_len(image[0], k[0], step[0], dil[0], pb[0], pa[0])
    ow = out_len(image[1], k[1], step[1], dil[1], pb[1], pa[1])
    opts = ["--image-shape", "x".join(map(str, image)), "--window", "%dx%d" % k,
            "--step", "%dx%d" % step, "--dilation", "%dx%d" % dil, "--mode", mode,
            "--order", order]
    if pad:
        opts += ["--pad", pad]
    # integers: exact in any summation order
    X = RNG.integers(-50, 50, (oh * ow, k[0] * k[1] * C)).astype(np.int32)
    got = fold(exe, tmp_path, X, *opts)
    want = plain_fold(X, image, k, step, dil, pb, pa, mode, order, channels)
    assert got.dtype == np.float64 and got.shape == image
    assert np.array_equal(got, want)
    # one value, and one vector of channels, per window
    v = RNG.integers(-9, 9, oh * ow).astype(np.int16)
    assert np.array_equal(fold(exe, tmp_path, v, *opts),
                          plain_fold(v, image, k, step, dil, pb, pa, mode, order, channels))
    if channels:
        Vc = RNG.integers(-9, 9, (oh * ow, C)).astype(np.uint8)
        assert np.array_equal(fold(exe, tmp_path, Vc, *opts),
                              plain_fold(Vc, image, k, step, dil, pb, pa, mode, order, True))
    # the transpose, with layout cols
    got = fold(exe, tmp_path, np.ascontiguousarray(X.T), *opts, "--layout", "cols")
    assert np.array_equal(got, want)
    # a Fortran-order input: strides followed
    np.save(tmp_path / "f.npy", np.asfortranarray(X))
    run(exe, "fold", tmp_path / "f.npy", "--out", tmp_path / "img.npy", "--quiet", *opts)
    assert np.array_equal(np.load(tmp_path / "img.npy"), want)


def test_fold_selection(exe, tmp_path):
    """--rows, --mask, --row-range and --sample: rows of the selection."""
    image, k = (9, 11), (3, 3)
    base = ["--image-shape", "9x11", "--window", "3", "--mode", "sum"]
    idx = np.array([5, 0, 5, 62, 17])
    np.save(tmp_path / "idx.npy", idx)
    X = RNG.integers(-50, 50, (idx.size, 9)).astype(np.int64)
    got = fold(exe, tmp_path, X, *base, "--rows", tmp_path / "idx.npy")
    assert np.array_equal(got, plain_fold(X, image, k, (1, 1), (1, 1), (0, 0), (0, 0), "sum",
                                          rows=idx))
    mask = np.zeros((7, 9), bool)
    mask[[0, 3, 6], [1, 4, 8]] = True
    np.save(tmp_path / "mask.npy", mask)
    X = RNG.integers(-50, 50, (3, 9)).astype(np.int64)
    got = fold(exe, tmp_path, X, *base, "--mask", tmp_path / "mask.npy", "--mode", "mean")
    assert np.array_equal(got, plain_fold(X, image, k, (1, 1), (1, 1), (0, 0), (0, 0), "mean",
                                          rows=np.flatnonzero(mask)))
    X = RNG.integers(-50, 50, (10, 9)).astype(np.int64)
    got = fold(exe, tmp_path, X, *base, "--row-range", "20:30")
    assert np.array_equal(got, plain_fold(X, image, k, (1, 1), (1, 1), (0, 0), (0, 0), "sum",
                                          rows=np.arange(20, 30)))


def test_fold_is_scikit_learns_reconstruct(exe, tmp_path):
    skl = pytest.importorskip("sklearn.feature_extraction.image")
    for shape, p in (((12, 10), (3, 3)), ((11, 13, 3), (4, 2))):
        img = RNG.standard_normal(shape)
        P = skl.extract_patches_2d(img, p)
        want = skl.reconstruct_from_patches_2d(P, shape)
        got = fold(exe, tmp_path, P.reshape(P.shape[0], -1), "--image-shape",
                   "x".join(map(str, shape)), "--window", "%dx%d" % p, "--mode", "mean")
        # the same summation order (patches in order) and one division
        assert np.array_equal(got, want)


def test_fold_is_torchs(exe, tmp_path):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for (H, W, C), k, s, d, p in (((9, 11, 2), (3, 2), (2, 1), (1, 2), (1, 0)),
                                  ((8, 8, 1), (3, 3), (1, 1), (1, 1), (1, 1))):
        oh = (H + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
        ow = (W + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
        cols = torch.randint(-20, 20, (1, C * k[0] * k[1], oh * ow), dtype=torch.float64)
        want = F.fold(cols, (H, W), k, dilation=d, padding=p, stride=s)[0].permute(1, 2, 0)
        X = cols[0].numpy()  # (C*kh*kw, windows): layout cols, channel order
        got = fold(exe, tmp_path, np.ascontiguousarray(X), "--image-shape", "%dx%dx%d" % (H, W, C),
                   "--window", "%dx%d" % k, "--step", "%dx%d" % s, "--dilation", "%dx%d" % d,
                   "--pad", "%d,%d" % p, "--order", "channel", "--layout", "cols")
        assert np.array_equal(got, want.numpy())


def test_fold_float32_and_report(exe, tmp_path):
    X = RNG.standard_normal((63, 9)).astype(np.float32)
    np.save(tmp_path / "m.npy", X)
    p = run(exe, "fold", tmp_path / "m.npy", "--image-shape", "9x11", "--window", "3",
            "--dtype", "float32", "--out", tmp_path / "o.npy", "--json")
    rep = json.loads(p.stdout)
    assert rep["output"]["dtype"] == "float32" and rep["output"]["mode"] == "sum"
    assert rep["matrix"]["rows"] == 63 and rep["rows"] == {"kind": "all"}
    got = np.load(tmp_path / "o.npy")
    want = plain_fold(X.astype(np.float64), (9, 11), (3, 3), (1, 1), (1, 1), (0, 0), (0, 0),
                      "sum")
    # float32 sums in matrix order: within 9 float32 roundings of the exact sum
    assert got.dtype == np.float32
    assert np.allclose(got, want, rtol=0, atol=9 * 9 * np.finfo(np.float32).eps * 4)


@pytest.mark.parametrize("args,words", [
    (["--window", "4"], "the geometry has 48 windows"),
    (["--window", "3", "--rows", "IDX"], "the geometry has 2 selected windows"),
    (["--window", "3", "--mask", "BADMASK"], "must have the windows' out_shape 7x9"),
    (["--window", "3", "--sample", "64"], "sample: 64 is more than the 63 windows"),
    (["--window", "3", "--dtype", "uint8"], "fold writes float32 or float64, not uint8\n"),
    (["--window", "3", "--dtype", "int64"], "fold writes float32 or float64, not int64\n"),
    (["--window", "3", "--dtype", "same"], "fold writes float32 or float64, not same (fold has "
                                           "no source image whose dtype it could keep)"),
    (["--window", "3", "--dtype", "complex64"], "dtype: 'complex64' is not a dtype"),
    (["--window", "3", "--mode", "median"], "--mode: 'median' is not sum, mean or count"),
    (["--window", "3", "--budget", "1M"], "unknown option --budget"),
    (["--window", "12"], "window"),
    (["--window", "3", "--row-pitch", "96"], "--row-pitch 96: the input's rows are 72 bytes "
                                             "apart; give the pitch of the input"),
    (["--window", "3", "--row-pitch", "512", "--layout", "cols"], "a pitch is for layout rows"),
])
def test_fold_refuses_and_writes_nothing(exe, tmp_path, args, words):
    X = RNG.standard_normal((63, 9))
    np.save(tmp_path / "m.npy", X)
    np.save(tmp_path / "idx.npy", np.array([1, 2]))
    np.save(tmp_path / "bad.npy", np.ones((7, 8), bool))
    args = [str(tmp_path / "idx.npy") if a == "IDX" else str(tmp_path / "bad.npy")
            if a == "BADMASK" else a for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    p = run(exe, "fold", tmp_path / "m.npy", "--image-shape", "9x11", "--out",
            tmp_path / "o.npy", *args, check=False)
    assert p.returncode != 0 and p.stderr.count("\n") == 1 and words in p.stderr, p.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_fold_never_overwrites_an_input(exe, tmp_path):
    X = RNG.standard_normal((63, 9))
    np.save(tmp_path / "m.npy", X)
    np.save(tmp_path / "idx.npy", np.arange(63))
    for out in ("m.npy", "idx.npy"):
        p = run(exe, "fold", tmp_path / "m.npy", "--image-shape", "9x11", "--window", "3",
                "--rows", tmp_path / "idx.npy", "--out", tmp_path / out, check=False)
        assert p.returncode != 0 and "refusing to write" in p.stderr, p.stderr
    assert np.array_equal(np.load(tmp_path / "m.npy"), X)
    assert np.array_equal(np.load(tmp_path / "idx.npy"), np.arange(63))


def test_fold_threads_give_the_same_image(exe, tmp_path):
    """--threads splits the image into bands of rows; the bytes do not
    change, with more threads than rows too."""
    X = RNG.standard_normal((9 * 7, 12)).astype(np.float32)
    args = ("--image-shape", "10x9x2", "--window", "2x3", "--step", "1x1",
            "--channel-axis", "2", "--mode", "mean")
    one = fold(exe, tmp_path, X, *args, "--threads", "1")
    assert one.shape == (10, 9, 2)
    for t in ("2", "3", "40"):
        assert fold(exe, tmp_path, X, *args, "--threads", t).tobytes() == one.tobytes()
    want = plain_fold(X, (10, 9, 2), (2, 3), (1, 1), (1, 1), (0, 0), (0, 0), "mean",
                      channels=True)
    assert np.allclose(one, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fold_of_padded_rows(exe, tmp_path, dtype):
    """--row-pitch: a matrix whose rows carry padding after the window's
    values (numpy's (windows, ld) array) folds as its packed columns do;
    it was folded as packed, or refused."""
    X = RNG.standard_normal((63, 9)).astype(dtype)
    P = np.zeros((63, 12), dtype)
    P[:, :9] = X
    P[:, 9:] = 1e9  # the padding must not reach the image
    pitch = 12 * np.dtype(dtype).itemsize
    want = plain_fold(X.astype(np.float64), (9, 11), (3, 3), (1, 1), (1, 1), (0, 0), (0, 0),
                      "sum")
    got = fold(exe, tmp_path, P, "--image-shape", "9x11", "--window", "3", "--row-pitch",
               str(pitch), name="padded.npy")
    packed = fold(exe, tmp_path, X, "--image-shape", "9x11", "--window", "3")
    assert np.array_equal(got, packed)
    assert np.allclose(got, want.reshape(got.shape), rtol=1e-6, atol=1e-5)
