"""numpy's defaults and the channel rule: the seed example verbatim (int64),
lists, every dtype numpy gives by default (int64, uint64, bool, float16)
exactly as numpy's astype converts it, and what an (H, W, C) image with a
2-D window means, against scikit-learn, sliding_window_view and torch."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import patchmap
from conftest import BACKENDS, assert_bits_equal

SEED = [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]


def test_seed_example_verbatim():
    img = np.arange(9).reshape(3, 3)
    assert img.dtype == np.int64  # numpy's default integer here
    X = patchmap.windows(img, (2, 2))
    assert X.dtype == np.float32 and X.tolist() == SEED
    same = patchmap.windows(img, (2, 2), dtype="same")
    assert same.dtype == np.int64 and str(same) == "[[0 1 3 4]\n [1 2 4 5]\n [3 4 6 7]\n [4 5 7 8]]"
    assert np.array_equal(patchmap.windows(img, (2, 2), dtype=img.dtype), same)


@pytest.mark.parametrize("source", [
    [[0, 1, 2], [3, 4, 5], [6, 7, 8]],                 # a list of ints: int64
    ((0, 1, 2), (3, 4, 5), (6, 7, 8)),                 # tuples
    [[0.0, 1, 2], [3, 4, 5], [6, 7, 8]],               # floats: float64
    np.arange(9, dtype=np.uint8).reshape(3, 3).tolist(),
])
def test_array_likes(source):
    X = patchmap.windows(source, (2, 2), dtype="same")
    assert X.dtype == np.asarray(source).dtype and X.tolist() == SEED


def awkward(dtype, n, seed=0):
    """Values that test a conversion: extremes, values float32 must round
    (int64 above 2^24, ties), NaN, infinities, subnormals."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.integers(0, 2, n).astype(bool)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        x = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
        special = [info.min, info.max, 0, 1, 2**24 + 1, 2**24 + 3, 2**53 + 1]
        if dt.kind == "i":
            special += [-1, -(2**24) - 1, -(2**53) - 1]
        special = np.array([v for v in special if info.min <= v <= info.max], dtype=dt)
    else:
        x = (rng.standard_normal(n) * 1000).astype(dt)
        fi = np.finfo(dt)
        special = np.array([np.nan, np.inf, -np.inf, -0.0, fi.max, fi.min, fi.tiny,
                            fi.tiny / 4, fi.eps], dtype=dt)
    x[: len(special)] = special
    return x


@pytest.mark.parametrize("dtype", ["int64", "uint64", "bool", "float16"])
@pytest.mark.parametrize("out", [np.float32, np.float64, "same"])
@pytest.mark.parametrize("backend", ["eager", "auto"])
def test_default_dtypes_exact(dtype, out, backend):
    img = awkward(dtype, 23 * 29).reshape(23, 29)
    X = patchmap.windows(img, (3, 4), step=(1, 2), dtype=out, backend=backend)
    want = sliding_window_view(img, (3, 4))[:, ::2].reshape(-1, 12)
    with np.errstate(all="ignore"):
        want = want if out == "same" else want.astype(out)
    assert_bits_equal(X, want)


@pytest.mark.parametrize("dtype", ["int64", "uint64", "float16"])
def test_default_dtypes_scale_and_pad(dtype):
    img = awkward(dtype, 12 * 10, seed=1).reshape(12, 10)
    X = patchmap.windows(img, 3, padding=1, pad_mode="reflect", scale=0.5, offset=-3)
    with np.errstate(all="ignore"):
        v = sliding_window_view(np.pad(img, 1, mode="reflect"), (3, 3)).reshape(-1, 9)
        want = v.astype(np.float32) * np.float32(0.5) + np.float32(-3)
    assert_bits_equal(X, want)


@pytest.mark.parametrize("dtype", [">i8", ">f2", ">u8"])
def test_byte_swapped_default_dtypes_refused(dtype):
    with pytest.raises(TypeError, match="byte-swapped"):
        patchmap.windows(np.zeros((4, 4), dtype), 2)


def test_object_arrays_refused():
    with pytest.raises(TypeError, match="unsupported source dtype object"):
        patchmap.windows(np.array([[1, "a"], [2, 3]], dtype=object), 1)


# ------------------------------------------------------------ the channel rule

RGB = (np.arange(6 * 7 * 3) * 37 % 251).astype(np.uint8).reshape(6, 7, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_by_default_like_sklearn(backend):
    from sklearn.feature_extraction.image import extract_patches_2d
    want = extract_patches_2d(RGB, (2, 2)).reshape(30, -1).astype(np.float32)
    for window in [2, (2, 2)]:
        X = patchmap.windows(RGB, window, backend=backend)
        assert X.shape == (30, 12)
        assert_bits_equal(X, want)
    assert patchmap.info(X)["channels"] == 3
    # the same with the axis named: last, -1, 2
    for axis in ["last", -1, 2]:
        assert_bits_equal(patchmap.windows(RGB, 2, channel_axis=axis), want)


def test_order_channel_is_swv_over_spatial_axes():
    want = sliding_window_view(RGB, (2, 2), axis=(0, 1)).reshape(30, -1).astype(np.float32)
    assert_bits_equal(patchmap.windows(RGB, 2, order="channel"), want)
    # and the default window order is not that one (the doc's old claim)
    assert not np.array_equal(patchmap.windows(RGB, 2), want)


def test_order_channel_is_torch_unfold():
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(RGB.astype(np.float32)).permute(2, 0, 1)[None]
    want = torch.nn.functional.unfold(t, (2, 2))[0].numpy()  # (C*kh*kw, L)
    assert_bits_equal(patchmap.windows(RGB, 2, order="channel", layout="cols"),
                      np.ascontiguousarray(want))


def test_channel_rule_table():
    """doc/options.md's table, through Python: (shape, window) -> channels,
    matrix columns; None for a refusal."""
    cases = [((8,), 3, 1, 3), ((8,), (3, 3), None, None), ((6, 7), 2, 1, 4),
             ((6, 7), (2, 3), 1, 6), ((6, 7), (2, 2, 2), None, None),
             ((6, 7, 3), 2, 3, 12), ((6, 7, 3), (2, 3), 3, 18), ((6, 7, 3), (2, 2, 2), 1, 8),
             ((5, 6, 7, 3), 2, 3, 24), ((5, 6, 7, 3), (2, 2), None, None),
             ((5, 6, 7, 3), (2, 2, 2), 3, 24), ((5, 6, 7, 3), (2, 2, 2, 2), 1, 16)]
    for shape, window, channels, cols in cases:
        img = np.zeros(shape, np.uint8)
        if channels is None:
            with pytest.raises(patchmap.InvalidArgument, match="window_shape=.*window: .*"
                               "channel_axis|window_shape=.*window: "):
                patchmap.windows(img, window)
            continue
        d = patchmap.describe(img, window)
        assert (d["matrix"]["channels"], d["matrix"]["cols"]) == (channels, cols), (shape, window)
    # channel_axis="none" windows the channels too
    assert patchmap.windows(RGB, 2, channel_axis="none").shape == (5 * 6 * 2, 8)
    with pytest.raises(patchmap.InvalidArgument, match="set channel_axis"):
        patchmap.windows(np.zeros((5, 6, 7, 3)), (2, 2))
