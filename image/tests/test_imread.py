"""patchmap.imread: image files as lazy ndarrays, and patchmap.windows over
them, against tifffile / Pillow decodes and sliding_window_view."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "python")
sys.path.insert(0, PYDIR)

import patchmap  # noqa: E402

pytestmark = pytest.mark.skipif(not os.environ.get("PATCHMAP_IMAGE_LIBRARY"),
                                reason="PATCHMAP_IMAGE_LIBRARY not set")


def vips(*a):
    subprocess.run(["vips", *map(str, a)], check=True, capture_output=True)


def write(tmp, name, a, *save):
    raw = tmp / (name + ".raw")
    a.tofile(raw)
    h, w, b = a.shape
    fmt = {np.dtype(np.uint8): "uchar", np.dtype(np.uint16): "ushort",
           np.dtype(np.float32): "float"}[a.dtype]
    extra = ["--interpretation", "grey16"] if a.dtype == np.uint16 else []
    vips("rawload", raw, tmp / (name + ".v"), w, h, b, "--format", fmt, *extra)
    vips(save[0], tmp / (name + ".v"), tmp / name, *save[1:])
    return tmp / name


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("imread")
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(150, 170, 3), dtype=np.uint8)
    g16 = rng.integers(0, 65536, size=(90, 77, 1), dtype=np.uint16)
    return {
        "rgb": (write(tmp, "rgb.tif", rgb, "tiffsave", "--tile", "--tile-width", 32,
                      "--tile-height", 32, "--pyramid", "--compression", "deflate"), rgb),
        "g16": (write(tmp, "g16.png", g16, "pngsave"), g16[:, :, 0]),
    }


def test_imread_is_the_image(files):
    for path, want in files.values():
        a = patchmap.imread(path, budget="64K", chunk="4K")
        assert a.shape == want.shape and a.dtype == want.dtype
        assert not a.flags.writeable
        assert np.array_equal(a, want)
        assert np.array_equal(a[::-3, 5:40], want[::-3, 5:40])


def test_imread_as_the_source_of_windows(files):
    path, want = files["rgb"]
    img = patchmap.imread(path, budget="32K", chunk="4K", backend="sigsegv")
    X = patchmap.windows(img, (5, 5), step=2, channel_axis=-1, budget="64K", chunk="4K")
    v = sliding_window_view(want, (5, 5), axis=(0, 1))[::2, ::2]
    ref = v.transpose(0, 1, 3, 4, 2).reshape(-1, 75).astype(np.float32)
    assert np.array_equal(X, ref)
    del img   # the matrix keeps the image alive
    assert np.array_equal(X[-5:], ref[-5:])


def test_level_page_bands(files):
    import tifffile

    path, want = files["rgb"]
    assert patchmap.image_info(patchmap.imread(path))["levels"] == 4
    a = patchmap.imread(path, level=1)
    assert np.array_equal(a, tifffile.imread(path, series=0, level=1))
    assert patchmap.image_info(a[3:])["level"] == 1
    b = patchmap.imread(path, bands=[2, 1])
    assert np.array_equal(b, want[:, :, [2, 1]])
    with pytest.raises(patchmap.InvalidArgument, match="level: '9' is not a level of the image, which has 4 levels"):
        patchmap.imread(path, level=9)
    with pytest.raises(patchmap.InvalidArgument, match="band 3"):
        patchmap.imread(path, bands=[3])
    with pytest.raises(patchmap.InvalidArgument, match="page: '1' is not a page"):
        patchmap.imread(files["g16"][0], page=1)


def test_arguments_through_the_grammar(files):
    """The image's memory options are the grammar's (budget not 0, threads a
    whole count), its bands a non-empty list of integers: nothing is
    truncated or taken to mean all."""
    path, want = files["rgb"]
    with pytest.raises(patchmap.InvalidArgument, match=r"bands=\[\]\): no band kept"):
        patchmap.imread(path, bands=[])
    with pytest.raises(patchmap.InvalidArgument, match="budget: '0' is not a positive size"):
        patchmap.imread(path, budget=0)
    with pytest.raises(patchmap.InvalidArgument, match="budget: "):
        patchmap.imread(path, budget="lots")
    with pytest.raises(TypeError, match="threads must be an integer"):
        patchmap.imread(path, threads=2.7)
    with pytest.raises(TypeError, match="threads must be an integer, not a bool"):
        patchmap.imread(path, threads=True)
    with pytest.raises(patchmap.InvalidArgument, match="threads: "):
        patchmap.imread(path, threads=-1)
    with pytest.raises(TypeError, match="bands must be an integer, not 1.5"):
        patchmap.imread(path, bands=[1.5])
    with pytest.raises(TypeError, match="page must be an integer, not 0.5"):
        patchmap.imread(path, page=0.5)
    with pytest.raises(patchmap.InvalidArgument, match="backend: "):
        patchmap.imread(path, backend="none")
    a = patchmap.imread(path, bands=np.array([2]), budget="1M", chunk="64K", threads="2")
    assert np.array_equal(a, want[:, :, 2])


def test_errors(tmp_path, files):
    with pytest.raises(patchmap.ImageError, match="No such file"):
        patchmap.imread(tmp_path / "missing.png")
    p = tmp_path / "text.png"
    p.write_bytes(b"plain text, not a picture\n" * 4)
    with pytest.raises(patchmap.ImageError, match="not an image format"):
        patchmap.imread(p)
    data = files["g16"][0].read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(patchmap.ImageError, match="cut.png: .*(png|PNG|read)"):
        patchmap.imread(cut)
    with pytest.raises(patchmap.InvalidArgument, match="backend"):
        patchmap.imread(files["g16"][0], backend="none")
    # a pipe with a writer: refused at once (libvips would read its first
    # bytes, then block for ever opening it again), as is a device
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    import threading

    def feed():
        with open(fifo, "wb") as f:
            try:
                f.write(data)
            except BrokenPipeError:
                pass
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    with pytest.raises(patchmap.ImageError, match=r"pipe\.png: not a regular file \(a pipe\): "
                       r"images that libvips decodes are read from files"):
        patchmap.imread(fifo)
    with open(fifo, "rb"):  # releases the writer, whatever the library did
        pass
    t.join(10)
    assert not t.is_alive()
    with pytest.raises(patchmap.ImageError, match=r"not a regular file \(a character device\)"):
        patchmap.imread("/dev/zero")


def test_image_outlives_nothing_after_close(files):
    # run in a child: the image's mapping goes with the last array over it
    code = textwrap.dedent("""
        import gc, sys
        sys.path.insert(0, %r)
        import numpy as np, patchmap
        a = patchmap.imread(%r)
        s = int(a[10:20].sum())
        v = a[10:20]
        del a; gc.collect()
        assert int(v.sum()) == s      # the view keeps the image open
        print("ok")
    """ % (PYDIR, str(files["rgb"][0])))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def damaged_files(tmp_path, files):
    """Two files whose header opens but a later tile cannot be decoded: the
    tiled pyramid written by vips with one tile's bytes overwritten, and a
    tiled TIFF written header first (tifffile) cut short, as a transfer that
    stopped does."""
    import tifffile

    path, rgb = files["rgb"]
    with tifffile.TiffFile(path) as t:
        page = t.pages[0]
        offsets, counts = page.dataoffsets, page.databytecounts
        across = -(-page.imagewidth // page.tilewidth)
    k = 3 * across + 2            # rows 96-127
    data = bytearray(path.read_bytes())
    data[offsets[k]:offsets[k] + counts[k]] = b"\x5a" * counts[k]
    bad = tmp_path / "damaged.tif"
    bad.write_bytes(bytes(data))
    whole = tmp_path / "header-first.tif"
    tifffile.imwrite(whole, rgb, tile=(32, 32), compression="zlib", photometric="rgb")
    with tifffile.TiffFile(whole) as t:
        assert t.pages[0].offset < min(t.pages[0].dataoffsets)
    data = whole.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[:len(data) * 6 // 10])
    return bad, cut


@pytest.mark.parametrize("backend", ["uffd", "sigsegv"])
@pytest.mark.parametrize("which", [0, 1])
def test_package_reads_raise_on_a_tile_failing_mid_scan(tmp_path, files, backend, which):
    # The package's own reads of a matrix over a damaged image: an
    # ImageError with the decoder's words, not SIGBUS; save leaves no file.
    path = damaged_files(tmp_path, files)[which]
    # two chunks of the image's 76.5 KiB at most resident: once the scan
    # met the damage, its first rows are gone and must be decoded again
    img = patchmap.imread(path, budget="16K", chunk="8K", backend=backend)
    assert img.shape == (150, 170, 3)             # it opens
    assert np.array_equal(img[:32], files["rgb"][1][:32])   # the rows before are right
    X = patchmap.windows(img, 3, budget="1M", chunk="64K")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(patchmap.ImageError, match="patchmap.save: .*%s: rows [0-9]+-[0-9]+: "
                       % path.name) as e:
        patchmap.save(out / "X.npy", X)
    assert "TIFF" in str(e.value) or "ecod" in str(e.value), e.value
    assert os.listdir(out) == []
    with pytest.raises(patchmap.ImageError, match="reading the matrix"):
        patchmap.take(X, [0, X.shape[0] - 1])
    m = patchmap.open(img, 3, backend="none")
    with pytest.raises(patchmap.ImageError, match="rows"):
        m.read()
    # and once a part failed, the image gives no more pixels (patchmap-image.h):
    # the first rows, decoded fine before, fail when they must be decoded again
    with pytest.raises(patchmap.ImageError, match="rows"):
        m.read(0, 1)


@pytest.mark.parametrize("backend", ["uffd", "sigsegv"])
def test_fold_of_a_matrix_over_an_image(tmp_path, files, backend):
    """fold reads a matrix over an imread image with libpatchmap-image's
    reads: over a damaged image an ImageError (it was SIGBUS in the
    matrix's filler thread), over a sound one the fold of the same matrix
    over the pixels in memory (integer sums: exact in any order)."""
    path, rgb = files["rgb"]
    ref = np.ascontiguousarray(rgb)
    for kw in [{}, {"step": 2}, {"rows": [5, 0, 7]}]:
        sel = {"rows": kw["rows"]} if "rows" in kw else {}
        geo = {k: v for k, v in kw.items() if k != "rows"}
        want = patchmap.fold(patchmap.select(ref, (3, 3), channel_axis=2, **geo, **sel)
                             if sel else patchmap.windows(ref, (3, 3), channel_axis=2, **geo),
                             ref.shape, (3, 3), channel_axis=2, **geo, **sel)
        img = patchmap.imread(path, budget="16K", chunk="8K", backend=backend)
        X = (patchmap.select(img, (3, 3), **geo, **sel) if sel else
             patchmap.windows(img, (3, 3), **geo))
        got = patchmap.fold(X, ref.shape, (3, 3), channel_axis=2, **geo, **sel)
        assert np.array_equal(got, want), kw
    for which in (0, 1):
        for sel in ({}, {"rows": [0, 20000]}):
            bad = damaged_files(tmp_path, files)[which]
            img = patchmap.imread(bad, budget="16K", chunk="8K", backend=backend)
            X = patchmap.select(img, 3, **sel) if sel else patchmap.windows(img, 3)
            with pytest.raises(patchmap.ImageError, match="rows"):
                patchmap.fold(X, (150, 170, 3), 3, channel_axis=2, **sel)


def test_user_reads_of_a_damaged_image_get_sigbus(tmp_path, files):
    # numpy's own reads (user code) follow the region contract: SIGBUS, as
    # a damaged file read through numpy.memmap.
    bad = damaged_files(tmp_path, files)[0]
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        import patchmap
        a = patchmap.imread(%r, budget="64K", chunk="8K")
        print(int(a.sum()))
    """ % (PYDIR, str(bad)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ))
    assert r.returncode == -7, (r.returncode, r.stderr)   # SIGBUS


def test_decoded_temporaries_go_with_the_image(tmp_path):
    """A PNG is decoded front to back, into a temporary file of libvips
    when larger than 100 MB. The file goes when the image is closed, in a
    process that goes on, and when the open fails on a damaged file; it
    was kept (by libvips' operation cache) until the process ended, and
    after a failed open for good."""
    h, w = 6400, 6000  # 115 MB of RGB
    row = np.random.default_rng(9).integers(0, 256, size=(1, w, 3), dtype=np.uint8)
    img = np.repeat(row, h, axis=0)
    img[:, 0, 0] = np.arange(h) % 256
    write(tmp_path, "big.png", img, "pngsave", "--compression", "1")
    data = (tmp_path / "big.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) * 6 // 10])
    vt = tmp_path / "vips-tmp"
    vt.mkdir()
    code = textwrap.dedent("""
        import gc, os, sys
        import patchmap
        vt = sys.argv[1]

        def held():  # temporaries open here, named or not (libvips unlinks
            out = []  # a finished one, and keeps it open)
            for fd in os.listdir("/proc/self/fd"):
                try:
                    t = os.readlink("/proc/self/fd/" + fd)
                except OSError:
                    continue
                if t.startswith(vt + "/"):
                    out.append(t)
            return out + os.listdir(vt)

        for round in range(2):
            im = patchmap.imread(sys.argv[2])
            assert im[-1, 0, 0] == (%d - 1) %% 256
            assert held(), "no temporary: the decode did not go to disc"
            del im
            gc.collect()
            assert held() == [], ("after close", held())
        try:
            patchmap.imread(sys.argv[3])
        except patchmap.ImageError as e:
            print("refused:", e)
        assert held() == [], ("after a failed open", held())
        print("ok")
    """ % h)
    env = dict(os.environ, TMPDIR=str(vt), PYTHONPATH=PYDIR)
    p = subprocess.run([sys.executable, "-c", code, vt, tmp_path / "big.png",
                        tmp_path / "cut.png"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0 and p.stdout.endswith("ok\n"), p.stdout + p.stderr
    assert "refused:" in p.stdout
    assert os.listdir(vt) == []


def test_dask_blocks_over_an_image(tmp_path, files):
    """patchmap.dask over an image path: each block is read by the image
    library's reads, so a damaged image is an ImageError from compute()
    (it was a SIGBUS that ended the process, or the worker), and a sound
    one gives the matrix."""
    pytest.importorskip("dask")
    import patchmap.dask as pmd
    path, rgb = files["rgb"]
    X = pmd.windows(str(path), 3, block_rows=5000)
    got = X.compute(scheduler="sync")
    assert type(got) is np.ndarray
    assert np.array_equal(got, patchmap.windows(np.ascontiguousarray(rgb), 3, channel_axis=2))
    for which in (0, 1):
        bad = damaged_files(tmp_path, files)[which]
        with pytest.raises(patchmap.ImageError, match="rows"):
            pmd.windows(str(bad), 3, block_rows=5000).compute(scheduler="sync")


def test_save_never_replaces_the_image_it_reads(tmp_path, files):
    """patchmap.save onto the file an imread image is decoded from, by its
    name, through a symlink, or as an open file: refused, the file kept
    (libvips reads the file, it does not map it, so the check of mapped
    files did not see it)."""
    path, rgb = files["rgb"]
    t = tmp_path / "t.npy"  # a TIFF under a .npy name: libvips reads it by its bytes
    t.write_bytes(path.read_bytes())
    (tmp_path / "s.npy").symlink_to(t)
    before = t.read_bytes()
    X = patchmap.windows(patchmap.imread(t), 3)
    for target in (t, tmp_path / "s.npy", str(t)):
        with pytest.raises(ValueError, match="is the file the matrix's source image is read "
                                             "from"):
            patchmap.save(target, X)
    with open(t, "r+b") as f:
        with pytest.raises(ValueError, match="is open on the file the matrix's source image"):
            patchmap.save(f, X)
    assert t.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["s.npy", "t.npy"]
    patchmap.save(tmp_path / "other.npy", X)
    assert np.array_equal(np.load(tmp_path / "other.npy"), np.asarray(
        patchmap.windows(np.ascontiguousarray(rgb), 3, channel_axis=2)))
