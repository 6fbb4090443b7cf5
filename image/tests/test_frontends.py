"""Image files through the front ends: the patchmap tool's info, export and
apply with --page, --level, --bands, --image-budget and --image-chunk, and
a tile that fails to decode in the middle of a scan. The files are written
by `vips` itself; every matrix is compared byte for byte with
sliding_window_view over an independent decode (tifffile, Pillow)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

EXE = os.environ.get("PATCHMAP_EXE")
pytestmark = pytest.mark.skipif(not EXE, reason="PATCHMAP_EXE not set")


def vips(*a):
    subprocess.run(["vips", *map(str, a)], check=True, capture_output=True)


def write(tmp, name, a, *save):
    raw = tmp / (name + ".raw")
    a.tofile(raw)
    h, w, b = a.shape
    fmt = {np.dtype(np.uint8): "uchar", np.dtype(np.uint16): "ushort"}[a.dtype]
    extra = ["--interpretation", "grey16"] if a.dtype == np.uint16 else []
    vips("rawload", raw, tmp / (name + ".v"), w, h, b, "--format", fmt, *extra)
    vips(save[0], tmp / (name + ".v"), tmp / name, *save[1:])
    return tmp / name


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("frontends")
    rng = np.random.default_rng(13)
    rgb = rng.integers(0, 256, size=(203, 301, 3), dtype=np.uint8)
    g16 = rng.integers(0, 65536, size=(70, 83, 1), dtype=np.uint16)
    return {
        "pyr": write(tmp, "pyr.tif", rgb, "tiffsave", "--tile", "--pyramid", "--tile-width", 64,
                     "--tile-height", 64, "--compression", "deflate"),
        "tiled": write(tmp, "tiled.tif", rgb, "tiffsave", "--tile", "--tile-width", 64,
                       "--tile-height", 64, "--compression", "deflate"),
        "g16": write(tmp, "g16.png", g16, "pngsave"),
    }


def run(*args, cwd=None):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def reference(img, win):
    if img.ndim == 2:
        return sliding_window_view(img, win).reshape(-1, win[0] * win[1])
    v = sliding_window_view(img, win, axis=(0, 1))
    return v.transpose(0, 1, 3, 4, 2).reshape(-1, win[0] * win[1] * img.shape[2])


@pytest.mark.parametrize("keys", [[], ["--level", "1"], ["--level", "2", "--bands", "2,0"],
                                  ["--bands", "1"]])
def test_export_is_the_matrix(files, tmp_path, keys):
    import tifffile

    level = int(keys[keys.index("--level") + 1]) if "--level" in keys else 0
    img = tifffile.imread(files["pyr"], series=0, level=level)
    if "--bands" in keys:
        img = img[:, :, [int(b) for b in keys[keys.index("--bands") + 1].split(",")]]
        if img.shape[2] == 1:
            img = img[:, :, 0]
    out = tmp_path / "m.npy"
    r = run("export", files["pyr"], "--window", "5x4", "--dtype", "same", "--out", out,
            "--image-budget", "64K", "--image-chunk", "16K", *keys)
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    assert np.array_equal(got, reference(img, (5, 4)))


def test_export_through_a_lazy_matrix_over_a_lazy_image(files, tmp_path):
    import tifffile

    img = tifffile.imread(files["tiled"])
    out = tmp_path / "m.npy"
    for backend in ("uffd", "sigsegv"):
        r = run("export", files["tiled"], "--window", "3", "--out", out, "--backend", backend,
                "--budget", "1M", "--chunk", "64K", "--image-budget", "64K",
                "--image-chunk", "8K")
        assert r.returncode == 0, r.stderr
        assert np.array_equal(np.load(out), reference(img, (3, 3)).astype(np.float32))


def test_png_16bit_and_apply(files, tmp_path):
    from PIL import Image

    img = np.asarray(Image.open(files["g16"])).astype(np.uint16)
    r = run("apply", files["g16"], "--window", "3", "--random", "2", "--seed", "5",
            "--out", tmp_path / "r.npy", "--save-filters", tmp_path / "f.npy",
            "--dtype", "float64")
    assert r.returncode == 0, r.stderr
    F = np.load(tmp_path / "f.npy")
    want = (reference(img, (3, 3)).astype(np.float64) @ F.T).T.reshape(2, 68, 81)
    assert np.allclose(np.load(tmp_path / "r.npy"), want, rtol=1e-12, atol=1e-6)


def test_info_names_what_was_opened(files):
    r = run("info", files["pyr"], "--level", "1", "--json")
    assert r.returncode == 0, r.stderr
    im = json.loads(r.stdout)["image"]
    assert im["format"] == "tiff" and im["loader"] == "tiffload"
    assert im["shape"] == [101, 150, 3] and im["levels"] == 4 and im["level"] == 1
    r = run("info", files["pyr"], "--level", "4")
    assert r.returncode == 1
    assert r.stderr == ("patchmap: %s: level: '4' is not a level of the image, which has 4 "
                        "levels (0 to 3)\n" % files["pyr"])


def damaged(files, tmp_path):
    """tiled.tif with one tile of its third row of tiles (rows 128-191)
    overwritten: the directory is intact, so the file opens."""
    import tifffile

    with tifffile.TiffFile(files["tiled"]) as t:
        page = t.pages[0]
        offsets, counts = page.dataoffsets, page.databytecounts
        across = -(-page.imagewidth // page.tilewidth)
    k = 2 * across + 1
    data = bytearray(files["tiled"].read_bytes())
    data[offsets[k]:offsets[k] + counts[k]] = b"\x5a" * counts[k]
    bad = tmp_path / "damaged.tif"
    bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize("cmd,extra", [
    ("export", []),                                    # pm_matrix_read in the tool's threads
    ("export", ["--threads", "1"]),
    ("export", ["--backend", "uffd", "--budget", "1M", "--chunk", "64K"]),
    ("export", ["--backend", "sigsegv", "--budget", "1M", "--chunk", "64K"]),
    ("apply", ["--random", "2"]),                      # BLAS on the mapping
    ("apply", ["--random", "2", "--backend", "sigsegv", "--budget", "1M", "--chunk", "64K"]),
    ("apply", ["--random", "2", "--save-filters", "@out/f.npy"]),   # neither file left
])
def test_tile_failing_mid_scan(files, tmp_path, cmd, extra):
    bad = damaged(files, tmp_path)
    out = tmp_path / "out" / "r.npy"
    out.parent.mkdir()
    extra = [str(out.parent / x[5:]) if x.startswith("@out/") else x for x in extra]
    assert run("info", bad, "--window", "3").returncode == 0     # it opens
    for json_flag in ([], ["--json"]):
        r = run(cmd, bad, "--window", "3", "--out", out, "--image-budget", "64K",
                "--image-chunk", "8K", *extra, *json_flag)
        assert r.returncode == 1, (r.returncode, r.stderr)
        lines = r.stderr.splitlines()
        assert len(lines) == 1, r.stderr
        # the file, the rows that failed and the decoder's own words
        assert lines[0].startswith("patchmap: %s: rows " % bad), lines
        assert "Decoding error" in lines[0], lines
        if json_flag:
            rep = json.loads(r.stdout)
            assert rep["exit"] == 1 and "Decoding error" in rep["error"]
        # no output, and no temporary beside it
        assert os.listdir(out.parent) == []


# ------------------------------------------------------------------ OpenSlide, JPEG 2000

def loaders():
    r = subprocess.run(["vips", "-l"], capture_output=True, text=True)
    return r.stdout


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """A synthetic Aperio slide: a tiled pyramid of three levels, each a
    tiled directory, the first described as Aperio's writer describes it,
    which OpenSlide (and so libvips' openslideload) recognises. Written with
    tifffile, read back level by level with tifffile as the reference."""
    import tifffile

    if "openslideload" not in loaders():
        pytest.skip("this libvips has no OpenSlide loader")
    tmp = tmp_path_factory.mktemp("slide")
    rng = np.random.default_rng(21)
    # every level whole tiles of 64: OpenSlide's Aperio reader paints a
    # level smaller than one tile white
    a = rng.integers(0, 256, size=(512, 768, 3), dtype=np.uint8)
    levels = [a, np.ascontiguousarray(a[::2, ::2]), np.ascontiguousarray(a[::4, ::4])]
    path = tmp / "slide.svs"
    with tifffile.TiffWriter(path) as t:
        for i, lv in enumerate(levels):
            desc = ("Aperio Image Library v10.0.0\n768x512 [0,0 768x512] (64x64) "
                    "|AppMag = 20|MPP = 0.5") if i == 0 else None
            t.write(lv, tile=(64, 64), photometric="rgb", compression="zlib",
                    description=desc, subfiletype=0 if i == 0 else 1, metadata=None)
    with tifffile.TiffFile(path) as t:
        ref = [p.asarray() for p in t.pages]
    assert all(np.array_equal(r, lv) for r, lv in zip(ref, levels))
    return path, ref


@pytest.mark.parametrize("level", [0, 1, 2])
def test_openslide_levels(slide, tmp_path, level):
    path, ref = slide
    r = run("info", path, "--level", level, "--json")
    assert r.returncode == 0, r.stderr
    im = json.loads(r.stdout)["image"]
    assert im["loader"] == "openslideload" and im["levels"] == 3 and im["file_bands"] == 4
    out = tmp_path / "m.npy"
    # OpenSlide gives RGBA: the colour bands, picked with --bands
    r = run("export", path, "--level", level, "--bands", "0,1,2", "--window", "4x3",
            "--dtype", "same", "--out", out, "--image-budget", "256K", "--image-chunk", "64K")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(out), reference(ref[level], (4, 3)))
    r = run("info", path, "--level", 3)
    assert r.returncode == 1 and "which has 3 levels (0 to 2)" in r.stderr


def test_jpeg2000_resolution_levels(tmp_path):
    if "jp2ksave" not in loaders() or "jp2kload" not in loaders():
        pytest.skip("this libvips has no JPEG 2000 loader and saver")
    from PIL import Image

    rng = np.random.default_rng(22)
    a = rng.integers(0, 256, size=(130, 170, 3), dtype=np.uint8)
    path = write(tmp_path, "a.jp2", a, "jp2ksave", "--lossless", "--tile-width", 64,
                 "--tile-height", 64)
    assert np.array_equal(np.asarray(Image.open(path)), a)   # lossless, read by OpenJPEG
    r = run("info", path, "--json")
    im = json.loads(r.stdout)["image"]
    assert im["loader"] == "jp2kload" and im["levels"] >= 2 and im["pages"] == 1
    out = tmp_path / "m.npy"
    r = run("export", path, "--window", "5", "--dtype", "same", "--out", out)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(out), reference(a, (5, 5)))
    # level 1: OpenJPEG's half resolution, as Pillow asks it with reduce
    with Image.open(path) as p:
        p.reduce = 1
        p.load()
        half = np.asarray(p)
    assert half.shape == ((130 + 1) // 2, (170 + 1) // 2, 3)
    r = run("export", path, "--level", 1, "--window", "3", "--dtype", "same", "--out", out)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(out), reference(half, (3, 3)))


def test_image_from_a_pipe(files, tmp_path):
    """A format that libvips decodes, given through a pipe: one line that
    says a pipe carries only .npy, PGM, PPM or raw samples (it said only
    "unknown image format")."""
    r = subprocess.run(["bash", "-c", '"$1" info <(cat "$2") --window 3', "-", EXE,
                        files["g16"]], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == "", r
    assert re.fullmatch(r"patchmap: /dev/fd/\d+: unknown image format \(not \.npy, PGM or PPM; "
                        r"a pipe can carry no other: give the image as a file\); for raw data "
                        r"give --shape and --raw-dtype\n", r.stderr), r.stderr


def test_decoder_message_is_one_clean_line(tmp_path):
    """libvips' error text ends in newlines (a PDF's: two): the one line
    the tool prints has no separator left at its end."""
    if "pdfload" not in subprocess.run(["vips", "-l"], capture_output=True, text=True).stdout:
        pytest.skip("this libvips has no PDF loader")
    p = tmp_path / "damaged.pdf"
    p.write_bytes(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n")
    r = run("info", p, "--window", "3")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert re.fullmatch(r"patchmap: %s: [^\n]*[^;\s]\n" % re.escape(str(p)), r.stderr), r.stderr


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_during_a_decode_leaves_no_temporary(tmp_path, sig):
    """A PNG over 100 MB is decoded at open into a temporary file of
    libvips, named until the decode is complete. A signal meanwhile left
    it in $TMPDIR for good; the tool gives libvips a directory of its own
    and removes it, contents and all, on the signal and at exit."""
    import signal
    import time
    from PIL import Image
    h, w = 7000, 6000  # 126 MB of RGB
    row = np.random.default_rng(5).integers(0, 256, size=(1, w, 3), dtype=np.uint8)
    big = tmp_path / "big.png"
    Image.fromarray(np.repeat(row, h, axis=0)).save(big, compress_level=1)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir))
    # a run to its end leaves nothing either
    r = subprocess.run([EXE, "info", big, "--window", "3"], capture_output=True, env=env,
                       timeout=120)
    assert r.returncode == 0 and os.listdir(tmpdir) == [], (r.stderr, os.listdir(tmpdir))
    for attempt in range(5):
        p = subprocess.Popen([EXE, "export", big, "--window", "3", "--out", tmp_path / "o.npy"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        seen, t0 = False, time.monotonic()
        while p.poll() is None and time.monotonic() - t0 < 60:
            for root, _, names in os.walk(tmpdir):
                seen = seen or any(f.startswith("vips-") for f in names)
            if seen:
                p.send_signal(getattr(signal, sig))
                break
            time.sleep(0.002)
        p.communicate(timeout=60)
        if seen:
            break
    assert seen, "the decode was never caught under way"
    assert p.returncode == -getattr(signal, sig), p.returncode
    assert os.listdir(tmpdir) == []
    assert not (tmp_path / "o.npy").exists()


def test_vips_directory_and_signals(files, tmp_path):
    """The directory the tool makes for libvips: not made for a .npy; gone
    after a SIGPIPE (the reader of --out - went away); and a signal the
    tool was started to ignore (nohup) stays ignored."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir))
    np.save(tmp_path / "img.npy", np.zeros((300, 300), np.uint8))
    r = subprocess.run(["bash", "-c", '"$1" export "$2" --window 8 --out - | head -c 100 '
                        '>/dev/null; echo "${PIPESTATUS[0]}"', "-", EXE, tmp_path / "img.npy"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout == "141\n" and os.listdir(tmpdir) == [], (r.stdout, os.listdir(tmpdir))
    r = subprocess.run(["bash", "-c", '"$1" export "$2" --window 8 --out - | head -c 100 '
                        '>/dev/null; echo "${PIPESTATUS[0]}"', "-", EXE, files["tiled"]],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout == "141\n" and os.listdir(tmpdir) == [], (r.stdout, os.listdir(tmpdir))
    code = ("import os, signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
            "p = subprocess.Popen([sys.argv[1], 'export', sys.argv[2], '--window', '8', '--out',"
            " '-'], stdout=subprocess.PIPE)\n"
            "p.stdout.read(4096)\n"  # the tool writes, and blocks on the full pipe
            "time.sleep(0.2)\n"
            "p.send_signal(signal.SIGHUP)\n"
            "p.send_signal(signal.SIGINT)\n"
            "time.sleep(0.2)\n"
            "alive = p.poll() is None\n"
            "n = 4096 + len(p.stdout.read())\n"
            "print(alive, p.wait(), n)\n")
    r = subprocess.run([sys.executable, "-c", code, EXE, files["tiled"]], capture_output=True,
                       text=True, env=env, timeout=120)
    want = 128 + 196 * 294 * 64 * 3 * 4  # header, float32 matrix of the 203 x 301 RGB image
    assert r.stdout.split() == ["True", "0", str(want)], (r.stdout, r.stderr)
    assert os.listdir(tmpdir) == []
