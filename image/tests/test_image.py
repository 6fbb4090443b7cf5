"""libpatchmap-image on small images the test writes with `vips` itself.

The pixels are numpy's: written raw, loaded with `vips rawload` and saved in
each format, so the reference for a lossless format is the array itself
(checked once more against tifffile or Pillow, decoders independent of
libvips); for JPEG the reference is Pillow's decode. Every patch matrix is
compared byte for byte with sliding_window_view(...)[::step].reshape.
"""
import os
import re
import signal
import subprocess

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

DUMP = os.environ.get("PM_IMAGE_DUMP")
DELAY = os.environ.get("PM_VIPS_ERROR_DELAY")   # vips-error-delay.c, built beside it
pytestmark = pytest.mark.skipif(not DUMP, reason="PM_IMAGE_DUMP not set")

VIPS_FORMAT = {np.uint8: "uchar", np.int8: "char", np.uint16: "ushort", np.int16: "short",
               np.uint32: "uint", np.int32: "int", np.float32: "float", np.float64: "double_vips"}


def vips(*args):
    subprocess.run(["vips", *map(str, args)], check=True, capture_output=True)


def pixels(h, w, bands, dtype, seed):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        a = rng.standard_normal((h, w, bands)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, size=(h, w, bands), endpoint=True, dtype=dtype)
    return a


def write(tmp, name, a, *save):
    """Writes array a (H, W, B) as tmp/name with `vips <save...>`."""
    raw = tmp / (name + ".raw")
    a.tofile(raw)
    v = tmp / (name + ".v")
    h, w, b = a.shape
    extra = []
    if a.dtype == np.uint16:   # else 16-bit savers scale down to 8 bits
        extra = ["--interpretation", "grey16" if b < 3 else "rgb16"]
    vips("rawload", raw, v, w, h, b, "--format", VIPS_FORMAT[a.dtype.type], *extra)
    out = tmp / name
    vips(save[0], v, out, *save[1:])
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    import tifffile
    from PIL import Image

    tmp = tmp_path_factory.mktemp("images")
    got = {}

    def add(key, a, *save, ref=None):
        path = write(tmp, key + "." + save[0].replace("save", ""), a, *save)
        got[key] = (path, a if ref is None else ref)

    a = pixels(203, 301, 3, np.uint8, 1)
    add("tiled_u8_rgb", a, "tiffsave", "--tile", "--tile-width", 64, "--tile-height", 64,
        "--compression", "deflate")
    assert np.array_equal(tifffile.imread(got["tiled_u8_rgb"][0]), a)
    a = pixels(157, 133, 1, np.uint8, 2)
    add("striped_u8", a, "tiffsave", "--compression", "lzw")
    assert np.array_equal(np.asarray(Image.open(got["striped_u8"][0])), a[:, :, 0])
    a = pixels(190, 170, 1, np.uint16, 3)
    add("bigtiff_u16", a, "tiffsave", "--bigtiff", "--tile", "--tile-width", 32,
        "--tile-height", 32)
    assert np.array_equal(tifffile.imread(got["bigtiff_u16"][0]), a[:, :, 0])
    a = pixels(97, 111, 1, np.float32, 4)
    add("float_f32", a, "tiffsave", "--tile", "--tile-width", 16, "--tile-height", 16)
    assert np.array_equal(tifffile.imread(got["float_f32"][0]), a[:, :, 0])
    a = pixels(61, 67, 5, np.int16, 5)
    add("multiband_i16", a, "tiffsave")
    assert np.array_equal(tifffile.imread(got["multiband_i16"][0]), a)
    a = pixels(45, 52, 2, np.float64, 6)
    raw = tmp / "double.raw"
    a.tofile(raw)
    vips("rawload", raw, tmp / "double.v", 52, 45, 2, "--format", "double")
    got["double_vips"] = (tmp / "double.v", a)
    a = pixels(75, 81, 3, np.uint8, 7)
    add("png_u8_rgb", a, "pngsave")
    assert np.array_equal(np.asarray(Image.open(got["png_u8_rgb"][0])), a)
    a = pixels(66, 59, 1, np.uint16, 8)
    add("png_u16", a, "pngsave")
    assert np.array_equal(np.asarray(Image.open(got["png_u16"][0])).astype(np.uint16),
                          a[:, :, 0])
    a = pixels(80, 96, 3, np.uint8, 9)
    path = write(tmp, "photo.jpg", a, "jpegsave", "--Q", 90)
    got["jpeg_rgb"] = (path, np.asarray(Image.open(path)))
    a = pixels(40, 44, 3, np.uint8, 10)
    add("webp_lossless", a, "webpsave", "--lossless")
    assert np.array_equal(np.asarray(Image.open(got["webp_lossless"][0])), a)
    return got


def dump(mode, path, *keys, out=None, check=True):
    args = [DUMP, mode, str(path), *keys]
    if out is not None:
        args.append("out=%s" % out)
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError("%s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr))
    return r


def info(path, *keys):
    r = dump("info", path, *keys)
    return dict(line.split("=", 1) for line in r.stdout.splitlines())


def as_hwc(a):
    return a if a.ndim == 3 else a[:, :, None]


def source(tmp_path, path, dtype, shape, *keys):
    out = tmp_path / "source.bin"
    dump("source", path, *keys, out=out)
    return np.fromfile(out, dtype=dtype).reshape(shape)


def reference_matrix(a, win, step):
    """sliding_window_view matrix of a (H, W) or (H, W, C) image, window order."""
    if a.ndim == 2:
        v = sliding_window_view(a, win)[::step[0], ::step[1]]
        return v.reshape(-1, win[0] * win[1])
    v = sliding_window_view(a, win, axis=(0, 1))[::step[0], ::step[1]]
    # (oh, ow, C, wh, ww) -> rows of (wh, ww, C)
    return v.transpose(0, 1, 3, 4, 2).reshape(-1, win[0] * win[1] * a.shape[2])


def matrix(tmp_path, path, dtype, *keys):
    out = tmp_path / "matrix.bin"
    dump("matrix", path, *keys, out=out)
    return np.fromfile(out, dtype=dtype)


KINDS = ["tiled_u8_rgb", "striped_u8", "bigtiff_u16", "float_f32", "multiband_i16",
         "double_vips", "png_u8_rgb", "png_u16", "jpeg_rgb", "webp_lossless"]


@pytest.mark.parametrize("kind", KINDS)
def test_source_is_the_decoded_image(images, tmp_path, kind):
    path, ref = images[kind]
    ref = as_hwc(ref)
    i = info(path)
    assert (int(i["height"]), int(i["width"]), int(i["bands"])) == ref.shape
    assert i["dtype"] == ref.dtype.name
    got = source(tmp_path, path, ref.dtype, ref.shape, "ichunk=4K", "ibudget=8K")
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("kind", KINDS)
def test_matrix_every_format(images, tmp_path, kind):
    path, ref = images[kind]
    a = ref if ref.ndim == 2 or ref.shape[2] > 1 else ref[:, :, 0]
    for win, step in [((5, 7), (2, 3)), ((16, 3), (1, 1))]:
        want = reference_matrix(a, win, step)
        got = matrix(tmp_path, path, a.dtype, "window=%dx%d" % win, "step=%dx%d" % step,
                     "ichunk=4K", "ibudget=16K", "mchunk=4K", "mbudget=16K")
        assert got.shape == (want.size,)
        assert np.array_equal(got.reshape(want.shape), want), (kind, win, step)


IMAGE_BACKENDS = ["uffd", "sigsegv", "eager"]
MATRIX_BACKENDS = ["uffd", "sigsegv", "eager", "none"]


@pytest.mark.parametrize("ib", IMAGE_BACKENDS)
@pytest.mark.parametrize("mb", MATRIX_BACKENDS)
def test_every_backend_pair_tight_budgets(images, tmp_path, ib, mb):
    # budgets far below both the image (183 KB) and its matrix (7.4 MB), two
    # filler threads per layer; 16 KiB image chunks are 18 rows of pixels
    path, a = images["tiled_u8_rgb"]
    want = reference_matrix(a, (8, 8), (3, 2)).astype(np.float32)
    got = matrix(tmp_path, path, np.float32, "window=8x8", "step=3x2", "dtype=float32",
                 "ibackend=" + ib, "ichunk=16K", "ibudget=32K", "ithreads=2",
                 "mbackend=" + mb, "mchunk=64K", "mbudget=128K", "mthreads=2")
    assert np.array_equal(got.reshape(want.shape), want), (ib, mb)


def test_channel_order(images, tmp_path):
    path, a = images["multiband_i16"]
    v = sliding_window_view(a, (4, 3), axis=(0, 1))[::2, ::1]
    want = v.reshape(v.shape[0] * v.shape[1], -1)  # (C, wh, ww) per row
    got = matrix(tmp_path, path, np.int16, "window=4x3", "step=2x1", "order=channel")
    assert np.array_equal(got.reshape(want.shape), want)


def test_bands_selected_and_reordered(images, tmp_path):
    path, a = images["multiband_i16"]
    got = source(tmp_path, path, np.int16, a.shape[:2] + (3,), "bands=4,0,2")
    assert np.array_equal(got, a[:, :, [4, 0, 2]])
    got = source(tmp_path, path, np.int16, a.shape[:2], "bands=3")
    assert np.array_equal(got, a[:, :, 3])
    i = info(path, "bands=3")
    assert (i["bands"], i["file_bands"]) == ("1", "5")


@pytest.fixture(scope="module")
def pyramids(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pyramids")
    a = pixels(260, 300, 3, np.uint8, 11)
    pages = write(tmp, "pages.tif", a, "tiffsave", "--tile", "--pyramid", "--tile-width", 32,
                  "--tile-height", 32, "--compression", "deflate")
    subifd = write(tmp, "subifd.tif", a, "tiffsave", "--tile", "--pyramid", "--subifd",
                   "--tile-width", 32, "--tile-height", 32, "--compression", "deflate")
    return pages, subifd


@pytest.mark.parametrize("which", [0, 1])
def test_pyramid_levels(pyramids, tmp_path, which):
    import tifffile

    path = pyramids[which]
    with tifffile.TiffFile(path) as t:
        levels = len(t.series[0].levels)
    assert levels == 5                   # 300 -> 150 -> 75 -> 38 -> 19 wide
    assert info(path)["levels"] == str(levels)
    for level in range(levels):
        # the matrix's length checks the level's shape, its bytes the pixels
        ref = tifffile.imread(path, series=0, level=level)
        want = reference_matrix(ref, (3, 3), (1, 2))
        got = matrix(tmp_path, path, np.uint8, "level=%d" % level, "window=3x3", "step=1x2",
                     "ichunk=4K", "ibudget=8K")
        assert got.size == want.size, level
        assert np.array_equal(got.reshape(want.shape), want), level
    r = dump("info", path, "level=5", check=False)
    assert r.returncode == 2
    assert "level: '5' is not a level of the image, which has 5 levels (0 to 4)" in r.stderr


def test_pages(tmp_path):
    import tifffile

    b = pixels(30, 40, 1, np.uint8, 12)[:, :, 0]
    c = pixels(50, 20, 1, np.uint16, 13)[:, :, 0]
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as t:
        t.write(b)
        t.write(c)
    assert info(path)["pages"] == "2"
    assert np.array_equal(source(tmp_path, path, np.uint8, b.shape, "page=0"), b)
    assert np.array_equal(source(tmp_path, path, np.uint16, c.shape, "page=1"), c)
    r = dump("info", path, "page=2", check=False)
    assert r.returncode == 2 and "page: '2' is not a page of the image, which has 2 pages (0 to 1)" in r.stderr


def test_page_of_a_format_without_pages(images):
    r = dump("info", images["png_u8_rgb"][0], "page=1", check=False)
    assert r.returncode == 2 and "page: '1' is not a page of the image, which has 1 page" in r.stderr


def test_bad_band(images):
    r = dump("info", images["tiled_u8_rgb"][0], "bands=0,3", check=False)
    assert r.returncode == 2
    assert "bands: band 3 is not a band of the image, which has 3 bands (0 to 2)" in r.stderr


# ------------------------------------------------------------------ errors

def test_missing_file(tmp_path):
    r = dump("info", tmp_path / "nothing.png", check=False)
    assert r.returncode == 2 and "No such file or directory" in r.stderr


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_bytes(b"\x00\x01 this is not an image at all\n" * 10)
    r = dump("info", p, check=False)
    assert r.returncode == 2
    assert "not an image format" in r.stderr


def one_line(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("kind,keep", [("png_u8_rgb", 0.6), ("png_u16", 0.5),
                                        ("jpeg_rgb", 0.6), ("striped_u8", 0.5),
                                        ("webp_lossless", 0.7)])
def test_truncated_file_refused_at_open(images, tmp_path, kind, keep):
    path, _ = images[kind]
    data = path.read_bytes()
    cut = tmp_path / ("cut" + path.suffix)
    cut.write_bytes(data[:int(len(data) * keep)])
    r = dump("source", cut, out=tmp_path / "x.bin", check=False)
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    assert line.startswith("open: ")
    assert not (tmp_path / "x.bin").exists()


def test_damaged_png_data_refused(images, tmp_path):
    path, _ = images["png_u8_rgb"]
    data = bytearray(path.read_bytes())
    i = data.index(b"IDAT") + 40
    data[i:i + 16] = b"\xff" * 16
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    r = dump("info", bad, check=False)
    assert r.returncode == 2
    assert "open: the image decoder refused" in one_line(r.stderr)


def damaged_tile(images, tmp_path):
    """The tiled TIFF with one tile's compressed bytes overwritten: its
    directory is intact, so it opens; that tile cannot be decoded."""
    import tifffile

    path, _ = images["tiled_u8_rgb"]
    with tifffile.TiffFile(path) as t:
        page = t.pages[0]
        offsets, counts = page.dataoffsets, page.databytecounts
        tiles_across = -(-page.imagewidth // page.tilewidth)
    k = 2 * tiles_across + 1   # a tile of the third row of tiles (rows 128-191)
    data = bytearray(path.read_bytes())
    data[offsets[k]:offsets[k] + counts[k]] = b"\x5a" * counts[k]
    bad = tmp_path / "damaged.tif"
    bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize("ib", IMAGE_BACKENDS[:2])
def test_tile_failing_mid_scan_gives_sigbus_and_the_message(images, tmp_path, ib):
    bad = damaged_tile(images, tmp_path)
    assert info(bad)["width"] == "301"    # opens: only the damaged tile fails
    r = dump("source", bad, "ibackend=" + ib, "ichunk=4K", "ibudget=8K",
             out=tmp_path / "x.bin", check=False)
    # the driver caught SIGBUS inside the image's region and asked pm_image_error
    assert r.returncode == 3, r.stderr
    line = one_line(r.stderr)
    assert line.startswith("decode error: ")
    assert "rows " in line and "Decoding error" in line


@pytest.mark.parametrize("ib", IMAGE_BACKENDS[:2])
@pytest.mark.parametrize("delay", [False, True])
def test_fills_failing_at_once_keep_the_decoders_words(images, tmp_path, ib, delay):
    # Four readers, spread over the matrix, meet the damaged tile at once.
    # With vips-error-delay.c preloaded, a fill that took the decoder's text
    # sleeps before it can keep it, while other fills find the text gone:
    # the message must still be the decoder's, about rows of that tile.
    assert DELAY, "PM_VIPS_ERROR_DELAY not set"
    bad = damaged_tile(images, tmp_path)
    env = None
    if delay:
        env = dict(os.environ, LD_PRELOAD=":".join(filter(None, [DELAY, os.environ.get(
            "LD_PRELOAD")])))
    r = subprocess.run([DUMP, "race", str(bad), "window=3x3", "rounds=10", "readers=4",
                        "ibackend=" + ib, "ichunk=8K", "ibudget=64K", "ithreads=2"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 10, r.stdout
    in_tile = 0
    for line in lines:
        m = re.fullmatch(r"round \d+: -5 -5 -5 -5 : -5 rows (\d+)-(\d+): (.*)", line)
        assert m, line
        assert "Decoding error" in m[3], line
        in_tile += int(m[1]) <= 191 and int(m[2]) >= 128     # the tile's rows: 128-191
    # The rows are a fill's whose own decoding failed, once one has; when
    # libvips hands even the decoding request the black tile, no fill's
    # has, and the rows are of the first fill that failed: rare, not never.
    assert in_tile >= 8, r.stdout


@pytest.mark.parametrize("ib", IMAGE_BACKENDS[:2])
def test_a_fill_after_the_text_went_elsewhere_fails(images, tmp_path, ib):
    # Row 130's fill decodes the damaged tile and, held 300 ms in libvips by
    # the module, is still there when an open that libvips refuses takes the
    # error text. Row 170's fill starts after that: libvips may hand it the
    # tile it painted black as a success, and it must fail all the same.
    assert DELAY, "PM_VIPS_ERROR_DELAY not set"
    bad = damaged_tile(images, tmp_path)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\0" + bytes(range(256)) * 8)      # refused: no directory
    env = dict(os.environ, PM_DELAY_FAILED_PREPARE="1",
               LD_PRELOAD=":".join(filter(None, [DELAY, os.environ.get("LD_PRELOAD")])))
    r = subprocess.run([DUMP, "late", str(bad), "rows=130,170", "opener=%s" % junk,
                        "ibackend=" + ib, "ichunk=8K", "ibudget=64K", "ithreads=2"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == ["row 130: -5", "row 170: -5"], r.stdout


@pytest.mark.parametrize("ib", IMAGE_BACKENDS[:2])
def test_opens_meanwhile_do_not_fail_a_scan(images, tmp_path, ib):
    # libvips keeps one error buffer per process, and a fill fails on text
    # it finds there. While four readers scan a good image, another thread
    # opens a PNG, a JPEG and a TIFF in turn: the PNG and JPEG loaders lack
    # arguments the open asks about, and asking must post no text.
    good = images["tiled_u8_rgb"][0]
    r = subprocess.run([DUMP, "race", str(good), "window=3x3", "rounds=20", "readers=4",
                        "ibackend=" + ib, "ichunk=8K", "ibudget=64K", "ithreads=2",
                        "opener=%s,%s,%s" % (images["png_u8_rgb"][0], images["jpeg_rgb"][0],
                                             images["striped_u8"][0])],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["round %d: 0 0 0 0 : 0 " % i for i in range(20)], r.stdout


def test_tile_failing_mid_scan_through_pm_matrix_read(images, tmp_path):
    bad = damaged_tile(images, tmp_path)
    r = dump("matrix", bad, "window=4x4", "mbackend=none", "ichunk=4K", "ibudget=8K",
             out=tmp_path / "x.bin", check=False)
    assert r.returncode == 3, r.stderr
    assert one_line(r.stderr).startswith("decode error: ")


def test_tile_failing_under_a_lazy_matrix_kills_with_sigbus(images, tmp_path):
    # A matrix filler thread reads the image: the failure reaches it as SIGBUS,
    # which the driver does not catch in that thread; the process dies of it
    # rather than handing out wrong data.
    bad = damaged_tile(images, tmp_path)
    r = dump("matrix", bad, "window=4x4", "mbackend=uffd", "ichunk=4K", "ibudget=8K",
             out=tmp_path / "x.bin", check=False)
    assert r.returncode == -signal.SIGBUS, (r.returncode, r.stderr)
