"""Every bad input ends with one line on stderr ("patchmap: ..."), a non-zero
exit status (1, or 2 for bad usage), nothing on stdout, and no output file,
finished or temporary, left behind."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run, write_npy, write_pnm, write_raw

IMG = np.arange(10 * 12, dtype=np.uint8).reshape(10, 12)


@pytest.fixture
def work(tmp_path):
    d = tmp_path / "work"
    d.mkdir()
    return d


def fails(exe, work, args, pattern, code=1, prefix=(), stdout=None):
    """Runs patchmap in `work` and checks the failure's every promise."""
    before = sorted(os.listdir(work))
    p = subprocess.run([*prefix, exe, *map(str, args)], stdout=stdout or subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, cwd=work, timeout=120)
    p.stdout = p.stdout or ""
    lines = p.stderr.splitlines()
    assert p.returncode == code, (p.returncode, p.stderr)
    assert len(lines) == 1 and p.stderr.endswith("\n"), p.stderr
    assert lines[0].startswith("patchmap: "), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    assert p.stdout == ""
    assert sorted(os.listdir(work)) == before, "output left behind"
    return lines[0]


def export_args(image, out="out.npy", *extra):
    return ["export", image, "--window", "3x3", "--out", out, *extra]


# ------------------------------------------------------------------ files

def test_missing_file(exe, work):
    fails(exe, work, export_args(work / "nope.npy"), r"nope\.npy: cannot open: No such file")


def test_directory(exe, work, tmp_path):
    fails(exe, work, export_args(tmp_path), r": is a directory")


def test_device(exe, work):
    """A device is no image: /dev/zero would be read until memory ran out."""
    fails(exe, work, export_args("/dev/zero"), r"^patchmap: /dev/zero: is a device, not an image file$")
    fails(exe, work, ["info", "/dev/null", "--window", "2"], r"/dev/null: is a device")


def test_unreadable(exe, unprivileged):
    work, prefix = unprivileged
    path = write_npy(work / "img.npy", IMG)
    os.chmod(path, 0)
    fails(exe, work, export_args(path), r"cannot open: Permission denied", prefix=prefix)


def test_empty_file(exe, work):
    path = work / "empty.npy"
    path.write_bytes(b"")
    fails(exe, work, export_args(path), r"empty\.npy: empty file")


def npy_bytes(arr):
    import io
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


TRUNCATED = {
    "npy-data": (npy_bytes(IMG)[:-1], r"truncated \.npy file: the data needs 120 bytes, the file "
                                       r"has 119"),
    "npy-header": (npy_bytes(IMG)[:40], r"truncated \.npy header"),
    "npy-magic": (b"\x93NUM", r"truncated \.npy header"),
    "pgm-data": (b"P5\n12 10\n255\n" + bytes(119), r"truncated PGM file: the pixels need 120"),
    "ppm16-data": (b"P6 12 10 4095 " + bytes(719), r"truncated PPM file: the pixels need 720"),
    "pgm-header": (b"P5\n12 10\n", r"truncated PGM/PPM header"),
}


@pytest.mark.parametrize("name", TRUNCATED)
def test_truncated(exe, work, name):
    data, pattern = TRUNCATED[name]
    path = work / "img.bin"
    path.write_bytes(data)
    fails(exe, work, export_args(path), pattern)


def test_raw_size_mismatch(exe, work):
    path = write_raw(work / "img.raw", IMG)
    fails(exe, work, export_args(path, "out.npy", "--shape", "11x12"),
          r"truncated raw file: the shape needs 132 bytes, the file has 120")
    fails(exe, work, export_args(path, "out.npy", "--shape", "5x12"),
          r"the raw file has 60 bytes more than the shape and dtype describe")
    fails(exe, work, export_args(path, "out.npy", "--shape", "10x6", "--raw-dtype", "u32"),
          r"truncated raw file: the shape needs 240 bytes")


def test_raw_offset_says_the_real_numbers(exe, work):
    """The bytes after the offset, not the file's size, on both sides."""
    path = write_raw(work / "img.raw", np.zeros((64, 80), np.uint8))
    fails(exe, work, export_args(path, "out.npy", "--shape", "64x80", "--raw-offset", "1000"),
          r"^patchmap: .*img\.raw: truncated raw file: the shape needs 5120 bytes after the "
          r"offset of 1000, the file has 4120 after it$")
    fails(exe, work, export_args(path, "out.npy", "--shape", "8x8", "--raw-offset", "6000"),
          r"^patchmap: .*img\.raw: the raw offset \(6000 bytes\) is beyond the end of the file "
          r"\(5120 bytes\)$")


def npy_with_header(text, version=b"\x01\x00"):
    hdr = text.encode("latin-1")
    hdr += b" " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY" + version + len(hdr).to_bytes(2, "little") + hdr + bytes(64)


BAD_HEADERS = {
    "npy-magic": (b"\x93NUMPX\x01\x00" + bytes(100), r"not a \.npy file \(bad magic\)"),
    "npy-version": (npy_with_header("{}", b"\x07\x00"), r"unsupported \.npy format version 7\.0"),
    "npy-no-dict": (npy_with_header("hello"), r"bad \.npy header: no dictionary"),
    "npy-missing-key": (npy_with_header("{'descr': '|u1', 'shape': (2, 2), }"),
                        r"bad \.npy header: missing fortran_order"),
    "npy-extra-key": (npy_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (8,"
                                      " 8), 'x': 1}"), r"unexpected or repeated key 'x'"),
    "npy-bad-shape": (npy_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (8, "
                                      "-8), }"), r"shape holds a bad extent"),
    "npy-scalar": (npy_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (), }"),
                   r"0-dimensional"),
    "npy-bool-order": (npy_with_header("{'descr': '|u1', 'fortran_order': 0, 'shape': (8,), }"),
                       r"fortran_order is not True or False"),
    "npy-descr-nul": (npy_with_header("{'descr': '<f\x004', 'fortran_order': False, 'shape': "
                                      "(8,), }"), r"unsupported \.npy dtype '<f\?4'$"),
    "npy-key-control": (npy_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (8,"
                                        "), 'a\x01b': 1}"), r"unexpected or repeated key 'a\?b'$"),
    "npy-key-long": (npy_with_header("{'" + "k" * 40 + "': 1}"),
                     r"unexpected or repeated key '" + "k" * 32 + r"\.\.\.'$"),
    "pgm-maxval": (b"P5\n12 10\n70000\n" + bytes(240), r"maximum value 70000 is not in 1\.\.65535"),
    "pgm-maxval0": (b"P5\n12 10\n0\n" + bytes(120), r"maximum value 0 is not in 1\.\.65535"),
    "pgm-empty": (b"P5\n0 10\n255\n", r"the PGM/PPM image is empty \(0 x 10\)"),
    "pgm-letters": (b"P5\nab 10\n255\n", r"the width is not a number"),
    "pgm-ascii": (b"P2\n2 2\n255\n1 2 3 4\n", r"P2 \(plain text or bitmap\) netpbm files are "
                                              r"not supported"),
    "pam": (b"P7\nWIDTH 2\n", r"PAM \(P7\) files are not supported"),
    # (and, where libpatchmap-image is built, not one libvips reads either)
    "unknown": (b"hello, world\n", r"unknown image format \(not \.npy, PGM or PPM(, nor one "
                                   r"libvips reads here)?\); for raw data give --shape and "
                                   r"--raw-dtype$"),
}


@pytest.mark.parametrize("name", BAD_HEADERS)
def test_bad_header(exe, work, name):
    data, pattern = BAD_HEADERS[name]
    path = work / "img.bin"
    path.write_bytes(data)
    fails(exe, work, export_args(path), pattern)


@pytest.mark.parametrize("dtype", ["<c8", "<c16", "|S4", "<M8[s]", "<m8[s]"])
def test_unsupported_npy_dtype(exe, work, dtype):
    path = write_npy(work / "img.npy", np.zeros((6, 6), dtype))
    fails(exe, work, export_args(path), r"unsupported \.npy dtype '[<|]..?")


def test_structured_npy(exe, work):
    path = write_npy(work / "img.npy", np.zeros((6, 6), [("a", "<f4"), ("b", "u1")]))
    fails(exe, work, export_args(path), r"unsupported \.npy dtype: structured arrays")


def test_unknown_raw_dtype(exe, work):
    path = write_raw(work / "img.raw", IMG)
    fails(exe, work, export_args(path, "out.npy", "--shape", "10x12", "--raw-dtype", "u128"),
          r"^patchmap: export: raw_dtype: 'u128' is not a sample type", code=2)
    fails(exe, work, export_args(path, "out.npy", "--shape", "10x12", "--raw-dtype", "u8"),
          r"^patchmap: export: raw_dtype: 'u8' is ambiguous: 8 bits \(uint8\) or numpy's 8 bytes \(uint64\)\?", code=2)


# ------------------------------------------------------------------ geometry and memory

def test_window_larger_than_image(exe, work):
    path = write_npy(work / "img.npy", IMG)
    fails(exe, work, ["export", path, "--window", "11x3", "--out", "out.npy"],
          r"^patchmap: window: '11x3' spans 11x3 samples, more than the source's 10x12 \(shape "
          r"10x12\): give a smaller window, or pad$")
    fails(exe, work, ["apply", path, "--window", "4x4", "--dilation", "4", "--random", "2",
                      "--out", "out.npy"],
          r"window: '4x4' with its dilation spans 13x13 samples, more than the source's 10x12")


def test_window_axes(exe, work):
    path = write_npy(work / "img.npy", np.zeros((3, 4, 5, 6), np.uint8))
    fails(exe, work, export_args(path), r"window: '3x3' gives 2 sizes for the 4-D source \(shape "
                                        r"3x4x5x6\): give 4 \(no channel axis\) or 3 \(channels "
                                        r"last\), or set channel_axis$")


def test_pad_value_not_representable(exe, work):
    path = write_npy(work / "img.npy", IMG)
    fails(exe, work, export_args(path, "out.npy", "--pad-mode", "constant", "--pad-value", "300"),
          r"pad_value: '300' cannot be stored as uint8")


def test_apply_needs_float_rows(exe, work):
    """apply multiplies rows of windows in float32 or float64; BLAS threads
    are a mapping's."""
    path = write_npy(work / "img.npy", IMG)
    base = ["apply", path, "--window", "3", "--random", "2", "--out", "out.npy"]
    fails(exe, work, base + ["--dtype", "u1"],
          r"^patchmap: dtype: apply computes in float32 or float64, not uint8$")
    fails(exe, work, base + ["--layout", "cols"],
          r"^patchmap: layout: apply reads one row per window \(rows\), not cols$")
    fails(exe, work, base + ["--backend", "none", "--blas-threads", "2"],
          r"^patchmap: blas-threads: apply without a mapping runs one BLAS thread in each of its "
          r"--threads; give --backend auto, uffd, sigsegv or eager for a mapping$")
    fails(exe, work, base, r"^patchmap: PATCHMAP_APPLY_KERNEL=sse: give blas, avx2 or avx512, "
          r"or leave it unset for the fastest this CPU has$",
          prefix=("env", "PATCHMAP_APPLY_KERNEL=sse"))


def test_budget_too_small(exe, work):
    path = write_npy(work / "img.npy", IMG)
    fails(exe, work, ["apply", path, "--window", "3x3", "--random", "2", "--out", "out.npy",
                      "--budget", "1M"],
          r"budget: 1 MiB is too small: it must hold at least two chunks of 4 MiB \(8 MiB\); "
          r"raise budget or lower chunk")
    fails(exe, work, export_args(path, "out.npy", "--budget", "100"),
          r"budget: 100 bytes is too small: export needs at least 4 KiB of buffer")
    fails(exe, work, ["demo", "--budget", "6M"], r"budget: 6 MiB is too small")
    # export through a mapping keeps an eighth for its buffers, and says so
    fails(exe, work, export_args(path, "out.npy", "--backend", "sigsegv", "--budget", "9M"),
          r"budget: 9 MiB is too small for export through a mapping: an eighth goes to the "
          r"write buffers and the rest must hold two chunks of 4 MiB; give --budget 9363 KiB "
          r"or more, or lower --chunk$")
    run(exe, "export", path, "--window", "3x3", "--out", work / "ok.npy", "--quiet",
        "--backend", "sigsegv", "--budget", "9363K")


def test_resident_more_than_memory(exe, work):
    """The eager backend, or an unlimited budget, on a 16 TiB matrix (more
    than any machine that runs this has): refused before anything is
    reserved (a sparse file stands for the image). apply pads rows of 4096
    bytes by 64 (see its BLAS panels), so a lazy matrix is 16.2 TiB."""
    path = work / "big.raw"
    with open(path, "wb") as f:
        f.truncate(65536 * 65536)
    args = ["apply", path, "--shape", "65536x65536", "--window", "32", "--random", "1",
            "--out", "out.npy"]
    fails(exe, work, args + ["--backend", "eager"],
          r"backend: the (cgroup memory limit of /.*|machine's available memory "
          r"\(MemAvailable\)) allows .* more; eager would keep all 16\.0 TiB of the matrix "
          r"resident; use a lazy backend")
    fails(exe, work, args + ["--budget", "unlimited"],
          r"budget: the .* allows .* more; budget unlimited would keep all 16\.2 TiB of the "
          r"matrix resident; give a budget, or none: the default fits")


# ------------------------------------------------------------------ filters

def test_filters_shape(exe, work):
    path = write_npy(work / "img.npy", IMG)
    f = write_npy(work / "f.npy", np.zeros((2, 4, 4), np.float32))
    fails(exe, work, ["apply", path, "--window", "3x3", "--filters", f, "--out", "out.npy"],
          r"f\.npy: the filters have shape 2x4x4; this window needs Nx9 or Nx3x3")


def test_filters_not_npy(exe, work):
    path = write_npy(work / "img.npy", IMG)
    f = write_pnm(work / "f.pgm", IMG)
    fails(exe, work, ["apply", path, "--window", "3x3", "--filters", f, "--out", "out.npy"],
          r"f\.pgm: the filters must be a \.npy file")
    fails(exe, work, ["apply", path, "--window", "3x3", "--filters", "none.npy", "--out",
                      "out.npy"], r"none\.npy: cannot open")


# ------------------------------------------------------------------ output

def test_output_directory_missing(exe, work):
    path = write_npy(work / "img.npy", IMG)
    fails(exe, work, export_args(path, "no/such/dir/out.npy"),
          r"^patchmap: cannot open 'no/such/dir/out\.npy' for writing: No such file or directory$")


def test_output_is_directory(exe, work):
    path = write_npy(work / "img.npy", IMG)
    (work / "sub").mkdir()
    fails(exe, work, export_args(path, "sub"), r"^patchmap: cannot open 'sub' for writing: Is a directory$")


def test_apply_output_unseekable(exe, work):
    path = write_npy(work / "img.npy", IMG)
    p = subprocess.run([exe, "apply", str(path), "--window", "3x3", "--random", "2", "--out", "-"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr == "patchmap: -: apply writes its output out of order: give a file or a " \
                       "seekable device\n"


def test_dev_full(exe, work):
    """A full device: the write fails (no temporary: a device is written in place)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    path = write_npy(work / "img.npy", IMG)
    fails(exe, work, export_args(path, "/dev/full"),
          r"^patchmap: cannot write '/dev/full': No space left on device$")
    fails(exe, work, ["apply", path, "--window", "3x3", "--random", "2", "--out", "/dev/full"],
          r"^patchmap: cannot write '/dev/full': No space left on device$")


def test_report_to_full_stdout(exe, work):
    """A report that cannot be written fails the command: a script reading
    the JSON must not take silence for success."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    path = write_npy(work / "img.npy", IMG)
    np.save(work / "m.npy", np.ones((80, 9)))
    out, filters = work / "o.npy", work / "f.npy"
    out.write_bytes(b"old")
    filters.write_bytes(b"old filters")
    before = sorted(os.listdir(work))
    apply = ["apply", path, "--window", "3x3", "--random", "2", "--out", out]
    for cmd in (["info", path, "--window", "3x3", "--json"],
                ["info", path, "--window", "3x3"],
                ["export", path, "--window", "3x3", "--out", out],
                ["export", path, "--window", "3x3", "--out", out, "--json"],
                apply, apply + ["--save-filters", filters],
                ["fold", work / "m.npy", "--image-shape", "10x12", "--window", "3", "--out", out]):
        with open("/dev/full", "w") as full:
            p = subprocess.run([exe, *map(str, cmd)], stdout=full, stderr=subprocess.PIPE,
                               text=True, timeout=60)
        assert p.returncode == 1, cmd
        assert p.stderr == "patchmap: standard output: No space left on device\n", p.stderr
        # failed, so nothing replaced: the old files kept, no temporary left
        assert out.read_bytes() == b"old" and filters.read_bytes() == b"old filters", cmd
        assert sorted(os.listdir(work)) == before, cmd


def in_namespace_with_tmpfs(options, script, *args):
    """Runs script with $1 a fresh tmpfs (mount options), in a private mount
    namespace so that nothing outlives the test (the mount point, made in
    the shared file system, is removed on the way out); None if that is not
    possible here."""
    unshare = shutil.which("unshare")
    if not unshare:
        return None
    cleanup = 'd=$(mktemp -d) || exit 99; trap \'cd /; umount "$d" 2>/dev/null; rmdir "$d" 2>/dev/null\' EXIT; '
    probe = subprocess.run([unshare, "-m", "sh", "-c",
                            cleanup + 'mount -t tmpfs -o size=64k tmpfs "$d"'],
                           capture_output=True, timeout=30)
    if probe.returncode:
        return None
    wrapper = (cleanup + 'mount -t tmpfs -o "$1" tmpfs "$d" || exit 99; shift; '
               'cd "$d"; ' + script)
    return subprocess.run([unshare, "-m", "sh", "-c", wrapper, "sh", options, *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def check_ns_failure(p, pattern):
    if p is None:
        pytest.skip("cannot mount a tmpfs in a private mount namespace (needs root)")
    assert p.returncode != 99, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("patchmap: "), p.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert p.stdout == "rc=1 left=[]\n", p.stdout


LIST = 'rc=$?; echo "rc=$rc left=[$(ls -A)]"'


def test_disk_full(exe, tmp_path):
    """A 256 KiB file system: the space reservation fails at once."""
    path = write_npy(tmp_path / "img.npy", np.zeros((64, 64), np.uint8))
    p = in_namespace_with_tmpfs("size=256k", '"$1" export "$2" --window 8x8 --out out.npy; ' + LIST,
                                exe, path)
    check_ns_failure(p, r"cannot reserve 812 KiB for 'out\.npy': No space left on device")
    p = in_namespace_with_tmpfs("size=256k", '"$1" apply "$2" --window 8x8 --random 64 '
                                '--out out.npy; ' + LIST, exe, path)
    check_ns_failure(p, r"cannot reserve .* for 'out\.npy': No space left on device")


def test_long_output_names(exe, work, tmp_path):
    """Names of 248 to 255 bytes are valid, and so must be their temporary's
    (shortened); a failure with such a name leaves no temporary either."""
    write_npy(work / "img.npy", IMG)
    run(exe, *export_args(work / "img.npy", work / "ref.npy"), "--quiet")
    for n in (247, 248, 251, 255):
        name = "a" * (n - 4) + ".npy"
        p = subprocess.run([exe, *export_args("img.npy", name), "--quiet"], cwd=work,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stderr == "", (n, p.stderr)
        assert (work / name).read_bytes() == (work / "ref.npy").read_bytes()
        p = subprocess.run([exe, "apply", "img.npy", "--window", "3", "--random", "1", "--out",
                            "o" + name[1:], "--save-filters", name, "--quiet"], cwd=work,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stderr == "", (n, p.stderr)
        assert np.load(work / name).shape == (1, 9)
        assert sorted(os.listdir(work)) == sorted(["img.npy", "ref.npy", name, "o" + name[1:]])
        os.unlink(work / name)
        os.unlink(work / ("o" + name[1:]))
    name = "b" * 251 + ".npy"
    path = write_npy(tmp_path / "big.npy", np.zeros((64, 64), np.uint8))
    p = in_namespace_with_tmpfs("size=256k", '"$1" export "$2" --window 8x8 --out "$3"; ' + LIST,
                                exe, path, name)
    check_ns_failure(p, r"cannot reserve 812 KiB for '%s': No space left on device" % name)


def test_disk_full_for_the_filters(exe, tmp_path):
    """apply --save-filters on a disk with room for the responses but not
    the filters: both old files kept, no temporary of either left (the
    responses must not be renamed into place before the filters are
    written)."""
    path = write_npy(tmp_path / "img.npy", np.zeros((64, 64), np.uint8))
    p = in_namespace_with_tmpfs(
        "size=128k", 'printf old > o.npy; printf oldf > f.npy; "$1" apply "$2" --window 60 '
        '--random 16 --out o.npy --save-filters f.npy; rc=$?; '
        'echo "rc=$rc left=[$(ls -A | tr "\\n" " ")] $(cat o.npy) $(cat f.npy)"', exe, path)
    if p is None:
        pytest.skip("cannot mount a tmpfs in a private mount namespace (needs root)")
    assert p.stderr.splitlines() == ["patchmap: cannot reserve 225 KiB for 'f.npy': No space "
                                     "left on device"], p.stderr
    assert p.stdout == "rc=1 left=[f.npy o.npy ] old oldf\n", p.stdout


@pytest.mark.parametrize("refused", ["f.npy", "o.npy"])
@pytest.mark.parametrize("old", [True, False])
def test_apply_renames_both_outputs_or_neither(exe, work, refused, old):
    """apply --out o.npy --save-filters f.npy when one finished file cannot
    be renamed into place (rename fails with EIO, through a preloaded
    helper): both old files are kept, or where there were none, neither new
    file is left, nor a temporary."""
    write_npy(work / "img.npy", IMG)
    if old:
        (work / "o.npy").write_bytes(b"old responses")
        (work / "f.npy").write_bytes(b"old filters")
    prefix = ("env", "LD_PRELOAD=" + os.environ["PATCHMAP_FAIL_RENAME"], "PM_FAIL_RENAME=" + refused)
    args = ["apply", "img.npy", "--window", "3", "--random", "2", "--out", "o.npy",
            "--save-filters", "f.npy", "--quiet"]
    kept = r" \(both old files kept\)" if refused == "f.npy" else ""
    fails(exe, work, args, r"^patchmap: cannot rename the finished file onto '%s': Input/output "
          r"error%s$" % (re.escape(refused), kept), prefix=prefix)
    if old:
        assert (work / "o.npy").read_bytes() == b"old responses"
        assert (work / "f.npy").read_bytes() == b"old filters"
    p = subprocess.run([exe, *args], cwd=work, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert np.load(work / "f.npy").shape == (2, 9)
    assert np.load(work / "o.npy").shape[0] == 2
    assert sorted(os.listdir(work)) == ["f.npy", "img.npy", "o.npy"]


def apply_with_failing_renames(exe, work, renames, *env):
    """apply --out o.npy --save-filters f.npy over old files, with rename
    failures (and signals) from the preloaded helper as $PM_FAIL_RENAME
    says: (the process, the name of the temporary the message says keeps
    the old responses, or None)."""
    write_npy(work / "img.npy", IMG)
    (work / "o.npy").write_bytes(b"old responses")
    (work / "f.npy").write_bytes(b"old filters")
    prefix = ("env", "LD_PRELOAD=" + os.environ["PATCHMAP_FAIL_RENAME"],
              "PM_FAIL_RENAME=" + renames, *env)
    p = subprocess.run([*prefix, exe, "apply", "img.npy", "--window", "3", "--random", "2",
                        "--out", "o.npy", "--save-filters", "f.npy", "--quiet"], cwd=work,
                       capture_output=True, text=True, timeout=60)
    m = re.fullmatch(r"patchmap: cannot rename the finished file onto 'f\.npy': Input/output "
                     r"error; 'o\.npy' is new, its old file is now '(.*/)?(\.o\.npy\.\w{6})'\n",
                     p.stderr)
    return p, m and m.group(2)


def test_apply_old_output_that_cannot_come_back(exe, work):
    """The filters cannot be renamed into place, and the old responses,
    exchanged with their temporary a moment before, cannot be exchanged
    back: the old responses are kept under the temporary's name, which the
    message gives, and the command fails."""
    p, kept = apply_with_failing_renames(exe, work, "f.npy o.npy:1")
    assert p.returncode == 1 and kept, p.stderr
    assert (work / kept).read_bytes() == b"old responses"
    assert (work / "f.npy").read_bytes() == b"old filters"
    assert np.load(work / "o.npy").shape[0] == 2
    assert sorted(os.listdir(work)) == sorted([kept, "f.npy", "img.npy", "o.npy"])


@pytest.mark.parametrize("when", ["during", "after"])
def test_apply_signal_during_a_failed_commit_is_said(exe, work, when):
    """Ctrl-C while apply renames its two outputs, and the renames fail
    (the filters cannot be renamed, the old responses cannot be swapped
    back): the signal waits until the failure has been said, the line that
    names where the old responses are kept included, then ends the tool."""
    # during: in the first rename; after: as soon as the handlers give
    # SIGINT back to its default action
    if when == "during":
        p, kept = apply_with_failing_renames(exe, work, "f.npy o.npy:1 o.npy^0")
    else:
        p, kept = apply_with_failing_renames(exe, work, "f.npy o.npy:1",
                                             "PM_RAISE_ON_RESTORE=1")
    assert p.returncode == -signal.SIGINT and kept, (p.returncode, p.stderr)
    assert (work / kept).read_bytes() == b"old responses"
    assert (work / "f.npy").read_bytes() == b"old filters"


def test_ignored_signals_stay_ignored(exe, work):
    """A tool started with SIGINT and SIGHUP ignored (nohup, a background
    job of a script) keeps ignoring them while it writes an output file
    (its handlers for removing the temporary took them over, and the tool
    died)."""
    write_npy(work / "img.npy", np.zeros((1024, 1024), np.uint8))
    code = ("import os, signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
            "for attempt in range(5):\n"
            "    p = subprocess.Popen([sys.argv[1], 'export', 'img.npy', '--window', '16',\n"
            "                          '--dtype', 'same', '--out', 'o.npy', '--quiet'])\n"
            "    seen = False\n"
            "    while p.poll() is None and not seen:\n"
            "        seen = any(f.startswith('.o.npy.') for f in os.listdir('.'))\n"
            "        time.sleep(0.001)\n"
            "    if seen:\n"
            "        p.send_signal(signal.SIGHUP)\n"
            "        p.send_signal(signal.SIGINT)\n"
            "    rc = p.wait()\n"
            "    if seen:\n"
            "        break\n"
            "print(seen, rc, os.path.getsize('o.npy'))\n")
    p = subprocess.run([sys.executable, "-c", code, exe], cwd=work, capture_output=True,
                       text=True, timeout=300)
    want = 128 + 1009 * 1009 * 256  # the .npy's header and the uint8 matrix
    assert p.stdout.split() == ["True", "0", str(want)], (p.stdout, p.stderr)
    assert sorted(os.listdir(work)) == ["img.npy", "o.npy"]


def test_read_only_file_system(exe, tmp_path):
    path = write_npy(tmp_path / "img.npy", IMG)
    p = in_namespace_with_tmpfs("size=64k,ro", '"$1" export "$2" --window 3x3 --out out.npy; '
                                + LIST, exe, path)
    check_ns_failure(p, r"cannot open 'out\.npy' for writing: Read-only file system")


# ------------------------------------------------------------------ outputs never destroy data

def same_bytes_after(fn, *paths):
    """Runs fn and checks that every path kept its bytes and mode."""
    before = [(Path(p).read_bytes(), os.stat(p).st_mode) for p in paths]
    fn()
    assert [(Path(p).read_bytes(), os.stat(p).st_mode) for p in paths] == before


def test_output_is_the_input(exe, work):
    """export onto its own image: refused before anything is written."""
    write_pnm(work / "img.pgm", IMG)
    same_bytes_after(lambda: fails(exe, work, export_args("img.pgm", "img.pgm"),
                                   r"^patchmap: refusing to write 'img\.pgm': it is the image$"),
                     work / "img.pgm")


def test_output_is_the_input_through_links(exe, work):
    """A symlink to the image, a hard link to it, and a path that spells it
    another way: the same device and inode, refused."""
    write_npy(work / "img.npy", IMG)
    (work / "sym.npy").symlink_to("img.npy")
    os.link(work / "img.npy", work / "hard.npy")
    (work / "sub").mkdir()
    for out in ["sym.npy", "hard.npy", "./sub/../img.npy", str(work / "img.npy")]:
        same_bytes_after(
            lambda: fails(exe, work, export_args("img.npy", out),
                          r"^patchmap: refusing to write '%s': it is the image 'img\.npy' "
                          r"\(the same file\)$" % re.escape(out)),
            work / "img.npy")
    assert (work / "sym.npy").is_symlink()
    # and the other way round: the image through a link, the output the file
    same_bytes_after(lambda: fails(exe, work, export_args("sym.npy", "img.npy"),
                                   r"refusing to write 'img\.npy': it is the image 'sym\.npy'"),
                     work / "img.npy")


def test_output_symlink_loop(exe, work):
    """An output named by a symlink loop: one line, ELOOP's words, and both
    links left as they were (not the first replaced by a regular file)."""
    write_npy(work / "img.npy", IMG)
    np.save(work / "m.npy", np.ones((80, 9)))
    os.symlink("loop2", work / "loop1")
    os.symlink("loop1", work / "loop2")
    base = ["apply", "img.npy", "--window", "3", "--random", "1"]
    for args in (export_args("img.npy", "loop1"), base + ["--out", "loop1"],
                 base + ["--out", "o.npy", "--save-filters", "loop1"],
                 ["fold", "m.npy", "--image-shape", "10x12", "--window", "3", "--out", "loop1"]):
        fails(exe, work, args, r"^patchmap: cannot open 'loop1' for writing: Too many levels of "
                               r"symbolic links$")
        assert os.readlink(work / "loop1") == "loop2" and os.readlink(work / "loop2") == "loop1"


def test_stdout_is_the_input(exe, work):
    """--out - with standard output appending to the image."""
    path = write_npy(work / "img.npy", IMG)
    with open(path, "ab") as f:
        same_bytes_after(lambda: fails(exe, work, export_args("img.npy", "-"),
                                       r"^patchmap: refusing to write 'standard output': it is "
                                       r"the image 'img\.npy' \(the same file\)$", stdout=f),
                         path)


@pytest.mark.parametrize("name", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
def test_descriptor_names_are_written_in_place(exe, work, name):
    """A name of standard output is written through the descriptor, as "-"
    is: after a shell's >>, the file keeps what it held and the matrix
    follows it, the report going to stderr. Opened anew, the name would
    lead to the file itself, which would be started over."""
    path = write_npy(work / "img.npy", IMG)
    want = subprocess.run([exe, *export_args(path, "-"), "--quiet"], capture_output=True,
                          timeout=60).stdout
    out = work / "e.npy"
    out.write_bytes(b"earlier")
    with open(out, "ab") as f:
        p = subprocess.run([exe, *export_args(path, name)], stdout=f, stderr=subprocess.PIPE,
                           text=True, cwd=work, timeout=60)
    assert p.returncode == 0 and p.stderr.startswith("export: "), p.stderr
    assert out.read_bytes() == b"earlier" + want
    with open(out, "ab") as f:
        p = subprocess.run([exe, *export_args(path, name), "--json"], stdout=f,
                           stderr=subprocess.PIPE, text=True, cwd=work, timeout=60)
    assert p.returncode == 0 and json.loads(p.stderr)["command"] == "export", p.stderr
    assert out.read_bytes() == b"earlier" + want + want
    assert sorted(os.listdir(work)) == ["e.npy", "img.npy"]


def test_descriptor_names_that_cannot_be_written(exe, work):
    """A descriptor that is not open, or open only for reading; a name of
    the descriptor that is the image."""
    write_npy(work / "img.npy", IMG)
    fails(exe, work, export_args("img.npy", "/dev/fd/9"),
          r"^patchmap: cannot open '/dev/fd/9' for writing: Bad file descriptor$")
    (work / "r").write_bytes(b"read only")
    same_bytes_after(lambda: fails(exe, work, export_args("img.npy", "/proc/self/fd/7"),
                                   r"^patchmap: cannot open '/proc/self/fd/7' for writing: Bad "
                                   r"file descriptor$", prefix=("sh", "-c", 'exec "$@" 7<r', "sh")),
                     work / "r")
    with open(work / "img.npy", "ab") as f:
        same_bytes_after(lambda: fails(exe, work, export_args("img.npy", "/dev/stdout"),
                                       r"^patchmap: refusing to write '/dev/stdout': it is the "
                                       r"image 'img\.npy' \(the same file\)$", stdout=f),
                         work / "img.npy")


def test_filters_to_stdout(exe, work):
    """apply --save-filters -: stdout holds the filters' .npy alone, the
    report (text or JSON) and a JSON error going to stderr."""
    import io
    write_npy(work / "img.npy", IMG)
    base = [exe, "apply", "img.npy", "--window", "3", "--random", "2", "--out", "o.npy",
            "--save-filters", "-"]
    for extra in ([], ["--json"]):
        p = subprocess.run(base + extra, capture_output=True, cwd=work, timeout=60)
        assert p.returncode == 0, p.stderr
        assert np.load(io.BytesIO(p.stdout)).shape == (2, 9)
        rep = p.stderr.decode()
        assert rep.startswith("apply: ") if not extra else json.loads(rep)["command"] == "apply"
    p = subprocess.run(base + ["--json", "--step", "0"], capture_output=True, cwd=work,
                       timeout=60)
    assert p.returncode == 2 and p.stdout == b"" and '"error"' in p.stderr.decode()


def test_apply_outputs_against_inputs(exe, work):
    """apply: --out or --save-filters onto the image or the filters file, and
    --out equal to --save-filters, refused before the first file is
    written."""
    write_npy(work / "img.npy", IMG)
    write_npy(work / "f.npy", np.ones((2, 3, 3), np.float32))
    base = ["apply", "img.npy", "--window", "3x3"]
    cases = [
        (["--filters", "f.npy", "--out", "f.npy"], r"refusing to write 'f\.npy': it is the filters "
                                                   r"file$"),
        (["--random", "2", "--out", "o.npy", "--save-filters", "img.npy"],
         r"refusing to write 'img\.npy': it is the image$"),
        (["--filters", "f.npy", "--out", "o.npy", "--save-filters", "./f.npy"],
         r"refusing to write '\./f\.npy': it is the filters file 'f\.npy' \(the same file\)$"),
        (["--random", "2", "--out", "new.npy", "--save-filters", "new.npy"],
         r"refusing to write 'new\.npy': it is the --save-filters file$"),
        (["--random", "2", "--out", "./new.npy", "--save-filters", "sub/../new.npy"],
         r"refusing to write '\./new\.npy': it is the --save-filters file 'sub/\.\./new\.npy' "
         r"\(the same file\)$"),
    ]
    (work / "sub").mkdir()
    for extra, pattern in cases:
        same_bytes_after(lambda: fails(exe, work, base + extra, "^patchmap: " + pattern),
                         work / "img.npy", work / "f.npy")


@pytest.fixture
def unprivileged(tmp_path):
    """A directory and a command prefix for running patchmap as a user
    without privileges: as root, permissions would not stop it (as they do
    not stop cp), so root runs it as nobody through setpriv."""
    if os.geteuid() != 0:
        d = tmp_path / "u"
        d.mkdir()
        yield d, ()
        return
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("running as root without setpriv to drop privileges")
    d = Path(tempfile.mkdtemp(prefix="patchmap-test-"))
    os.chmod(d, 0o755)
    os.chown(d, 65534, 65534)
    try:
        yield d, (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--")
    finally:
        for root, dirs, _ in os.walk(d):
            for n in dirs:
                os.chmod(os.path.join(root, n), 0o755)
        shutil.rmtree(d)


def as_owner(work, *paths):
    st = os.stat(work)
    for p in paths:
        os.chown(p, st.st_uid, st.st_gid)


def test_read_only_output_is_kept(exe, unprivileged):
    """An existing 0444 output is refused as cp refuses it, naming the
    user's path; the file keeps its bytes and mode."""
    work, prefix = unprivileged
    path = write_npy(work / "img.npy", IMG)
    old = work / "old.npy"
    old.write_bytes(b"precious")
    as_owner(work, path, old)
    os.chmod(old, 0o444)
    same_bytes_after(lambda: fails(exe, work, export_args("img.npy", "old.npy"),
                                   r"^patchmap: cannot open 'old\.npy' for writing: Permission "
                                   r"denied$", prefix=prefix), old)
    same_bytes_after(lambda: fails(exe, work, ["apply", "img.npy", "--window", "3", "--random",
                                               "1", "--out", "o.npy", "--save-filters",
                                               "old.npy"],
                                   r"^patchmap: cannot open 'old\.npy' for writing: Permission "
                                   r"denied$", prefix=prefix), old)


def test_read_only_output_is_kept_for_root(exe, work):
    """Root may write any file, but one that nobody may write (0444) is kept
    all the same, as patchmap.save keeps it (cp as root would replace it);
    a writable one is replaced, as by the other front ends."""
    if os.geteuid() != 0:
        pytest.skip("not root: permissions refuse it (test_read_only_output_is_kept)")
    write_npy(work / "img.npy", IMG)
    old = work / "old.npy"
    old.write_bytes(b"precious")
    os.chmod(old, 0o444)
    same_bytes_after(lambda: fails(exe, work, export_args("img.npy", "old.npy"),
                                   r"^patchmap: refusing to replace 'old\.npy': it is read-only "
                                   r"\(mode 0444\): remove it or make it writable first$"), old)
    os.chmod(old, 0o640)
    p = subprocess.run([exe, *export_args("img.npy", "old.npy")], cwd=work,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert old.read_bytes() != b"precious" and os.stat(old).st_mode & 0o777 == 0o640


def test_read_only_directory(exe, unprivileged):
    """A new output in a directory the user may not write, and an existing
    writable file there (it is replaced by a new file beside it)."""
    work, prefix = unprivileged
    path = write_npy(work / "img.npy", IMG)
    ro = work / "ro"
    ro.mkdir()
    (ro / "x.npy").write_bytes(b"precious")
    as_owner(work, path, ro, ro / "x.npy")
    os.chmod(ro, 0o555)
    fails(exe, work, export_args("img.npy", "ro/new.npy"),
          r"^patchmap: cannot open 'ro/new\.npy' for writing: Permission denied$", prefix=prefix)
    same_bytes_after(lambda: fails(exe, work, export_args("img.npy", "ro/x.npy"),
                                   r"^patchmap: cannot write 'ro/x\.npy': a new file cannot be "
                                   r"created beside it, in its directory: Permission denied$",
                                   prefix=prefix), ro / "x.npy")
    assert sorted(os.listdir(ro)) == ["x.npy"]


def test_replaced_output_keeps_its_mode(exe, tmp_path):
    """Replacing a 0600 file does not widen it to 0644."""
    path = write_npy(tmp_path / "img.npy", IMG)
    out = tmp_path / "o.npy"
    out.write_bytes(b"old")
    os.chmod(out, 0o600)
    run(exe, "export", path, "--window", "3x3", "--out", out, "--quiet")
    assert os.stat(out).st_mode & 0o7777 == 0o600
    assert np.load(out).shape == (80, 9)


def interrupt_once_writing(p, work):
    """Sends SIGINT to p once its temporary output (.out.npy.*) appears in
    work, and checks that SIGINT ended it."""
    deadline = time.time() + 30
    while not any(n.startswith(".out.npy.") for n in os.listdir(work)):
        assert p.poll() is None and time.time() < deadline, "no temporary appeared"
        time.sleep(0.005)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGINT


def test_interrupted_export_keeps_the_old_file(exe, work):
    """SIGINT midway through replacing a file: the old file is intact and
    no partial file is left."""
    path = write_raw(work / "img.raw", np.zeros((1024, 1024), np.uint8))
    (work / "out.npy").write_bytes(b"the old output")
    before = sorted(os.listdir(work))
    p = subprocess.Popen([exe, "export", str(path), "--shape", "1024x1024", "--window", "16",
                          "--out", "out.npy", "--threads", "1", "--quiet"],
                         cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    interrupt_once_writing(p, work)
    assert sorted(os.listdir(work)) == before
    assert (work / "out.npy").read_bytes() == b"the old output"


def test_interrupted_export_leaves_nothing(exe, work):
    """SIGINT while writing: the temporary is removed."""
    path = write_raw(work / "img.raw", np.zeros((1024, 1024), np.uint8))
    before = sorted(os.listdir(work))
    p = subprocess.Popen([exe, "export", str(path), "--shape", "1024x1024", "--window", "16",
                          "--out", "out.npy", "--threads", "1", "--quiet"],
                         cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    interrupt_once_writing(p, work)
    assert sorted(os.listdir(work)) == before


def rss_file(pid):
    """The bytes of files the process has resident (RssFile), or 0."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssFile:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def shrinks_while_read(p, path, ready):
    """Truncates the input path once ready() says p reads it, and checks
    that p then fails with one line saying so: no SIGBUS."""
    size = os.path.getsize(path)
    deadline = time.time() + 30
    while not ready():
        assert p.poll() is None and time.time() < deadline, "the command never got going"
        time.sleep(0.005)
    os.truncate(path, 1000)
    out, err = p.communicate(timeout=60)
    lines = err.decode().splitlines()
    assert p.returncode == 1, (p.returncode, lines)
    assert lines == [f"patchmap: {path}: the file shrank while being read (from {size} to "
                     "1000 bytes): it must not change until the command ends"], lines


@pytest.mark.parametrize("command", [
    ["export", "--window", "16", "--threads", "1"],
    ["apply", "--window", "16", "--random", "16", "--threads", "2"],
])
@pytest.mark.parametrize("fmt", ["npy", "raw"])
def test_input_shrinks_while_read(exe, work, command, fmt):
    """The mapped input truncated while the command writes its output: one
    line and status 1, the temporary removed, the old output kept."""
    img = np.zeros((1024, 1024), np.uint8)
    if fmt == "npy":
        path, shape = write_npy(work / "img.npy", img), []
    else:
        path, shape = write_raw(work / "img.raw", img), ["--shape", "1024x1024"]
    (work / "out.npy").write_bytes(b"the old output")
    before = sorted(os.listdir(work))
    p = subprocess.Popen([exe, command[0], str(path), *shape, *command[1:], "--out", "out.npy",
                          "--quiet"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    shrinks_while_read(p, path, lambda: any(n.startswith(".out.npy.") for n in os.listdir(work)))
    assert sorted(os.listdir(work)) == before
    assert (work / "out.npy").read_bytes() == b"the old output"


def test_fold_input_shrinks_while_read(exe, work):
    """fold's input matrix truncated while pm_fold reads it (1 GiB of
    float32, zeros: a sparse file)."""
    path = work / "m.npy"
    m = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(1 << 20, 256))
    del m
    before = sorted(os.listdir(work))
    p = subprocess.Popen([exe, "fold", str(path), "--image-shape", "1039x1039", "--window", "16",
                          "--out", "out.npy", "--quiet"],
                         cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # fold writes nothing before pm_fold is done: it is reading once
    # part of the input is resident
    shrinks_while_read(p, path, lambda: rss_file(p.pid) >= 64 << 20)
    assert sorted(os.listdir(work)) == before


# ------------------------------------------------------------------ usage

USAGE = [
    (["frobnicate"], r"unknown command 'frobnicate'"),
    (["export", "IMG", "--window", "3x3"], r"export needs --out FILE"),
    (["export", "IMG", "--out", "o.npy"], r"export needs --window"),
    (["export", "--window", "3", "--out", "o.npy"], r"export needs an IMAGE"),
    (["export", "IMG", "IMG2", "--window", "3", "--out", "o.npy"], r"'IMG2' is one too many"),
    (["export", "IMG", "--window", "3x0", "--out", "o.npy"], r"export: window: '3x0' is not a window "
                                                             r"size"),
    (["export", "IMG", "--window", "3", "--out", "o.npy", "--bogus"], r"unknown option --bogus"),
    (["export", "IMG", "--window", "3", "--out", "o.npy", "--budget", "lots"],
     r"export: budget: 'lots' is not a positive size"),
    (["export", "IMG", "--window", "3", "--out", "o.npy", "--backend", "magic"],
     r"export: backend: 'magic' is not auto, uffd, sigsegv, eager or none"),
    (["export", "IMG", "--window", "3", "--out", "o.npy", "--pad-mode", "mirror"],
     r"export: pad_mode: 'mirror' is not zero, constant"),
    (["export", "IMG", "--window", "3", "--out", "o.npy", "--pad", "1x2x3"],
     r"export: pad: '1x2x3' is not same, valid, N"),
    (["export", "IMG", "--window", "3", "--out", "o.npy", "--dtype", "complex64"],
     r"export: dtype: 'complex64' is not a dtype"),
    (["export", "IMG", "--window", "3", "--out", "o.npy", "--dtype", "u8"],
     r"export: dtype: 'u8' is ambiguous"),
    (["apply", "IMG", "--window", "3", "--out", "o.npy"], r"needs either --filters FILE or --random N"),
    (["info", "IMG", "--step", "2"], r"info matrix options need --window"),
    (["info", "IMG", "--rows", "r.npy"], r"info matrix options need --window"),
    (["info", "IMG", "--mask", "m.npy"], r"info matrix options need --window"),
    (["info", "IMG", "--sample", "3"], r"info matrix options need --window"),
    (["info", "IMG", "--out", "x"], r"unknown option --out"),
    (["demo", "extra"], r"demo takes no argument \('extra'\)"),
    (["export", "IMG", "--window"], r"option --window needs a value"),
]


@pytest.mark.parametrize("args,pattern", USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage(exe, work, args, pattern):
    fails(exe, work, args, pattern, code=2)


# ------------------------------------------------------------------ --json

JSON_ERRORS = [
    (["export", "IMG", "--window", "3x0", "--out", "o.npy", "--json"], 2,
     r"^export: window: '3x0' is not a window size"),
    (["export", "IMG", "--json", "--window"], 2, r"option --window needs a value"),
    (["info", "IMG", "--json", "--bogus"], 2, r"unknown option --bogus"),
    (["frobnicate", "--json"], 2, r"^unknown command 'frobnicate'"),
    (["info", "nope.npy", "--json"], 1, r"^nope\.npy: cannot open: No such file or directory$"),
    (["export", "img.npy", "--window", "99", "--out", "o.npy", "--json"], 1,
     r"^window: '99' spans 99x99 samples, more than the source's 10x12"),
    (["export", "img.npy", "--window", "3", "--out", "img.npy", "--json"], 1,
     r"^refusing to write 'img\.npy': it is the image$"),
]


@pytest.mark.parametrize("args,code,pattern", JSON_ERRORS, ids=[" ".join(a) for a, _, _ in JSON_ERRORS])
def test_json_errors(exe, work, args, code, pattern):
    """Under --json, a failure is one JSON object on stdout, {"error", "exit"},
    and the usual line on stderr."""
    write_npy(work / "img.npy", IMG)
    before = sorted(os.listdir(work))
    p = subprocess.run([exe, *args], capture_output=True, text=True, cwd=work, timeout=60)
    assert p.returncode == code, p.stderr
    rep = json.loads(p.stdout)
    assert sorted(rep) == ["error", "exit"] and rep["exit"] == code
    assert re.search(pattern, rep["error"]), rep["error"]
    assert p.stderr == "patchmap: " + rep["error"] + "\n"
    assert sorted(os.listdir(work)) == before


def test_json_errors_with_output_on_stdout(exe, work):
    """With --out -, stdout is the output: the JSON error goes to stderr,
    alone."""
    write_npy(work / "img.npy", IMG)
    for args, code in [(["export", "img.npy", "--window", "99", "--out", "-", "--json"], 1),
                       (["export", "img.npy", "--window", "0", "--json", "--out", "-"], 2)]:
        p = subprocess.run([exe, *args], capture_output=True, text=True, cwd=work, timeout=60)
        assert p.returncode == code and p.stdout == ""
        rep = json.loads(p.stderr)
        assert rep["exit"] == code and rep["error"], p.stderr


def test_help(exe):
    for cmd in ([], ["demo"], ["info"], ["apply"], ["export"]):
        p = run(exe, *cmd, "--help")
        assert p.stdout.startswith("usage: patchmap")
    p = subprocess.run([exe], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.startswith("usage: patchmap")


def test_interrupted_apply_leaves_nothing(exe, work):
    """SIGINT while the workers of apply's default (no mapping) compute and
    write: the temporary is removed."""
    path = write_raw(work / "img.raw", np.zeros((2048, 2048), np.uint8))
    before = sorted(os.listdir(work))
    p = subprocess.Popen([exe, "apply", str(path), "--shape", "2048x2048", "--window", "16",
                          "--random", "16", "--out", "out.npy", "--threads", "2", "--quiet"],
                         cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    interrupt_once_writing(p, work)
    assert sorted(os.listdir(work)) == before


def test_export_with_a_row_pitch(exe, work):
    """export writes packed rows: a pitch is refused with what to do."""
    write_npy(work / "img.npy", IMG)
    fails(exe, work, export_args("img.npy", "out.npy", "--row-pitch", "64"),
          r"^patchmap: --row-pitch: export writes the matrix with packed rows \(a \.npy has no "
          r"row padding\): leave the option out$")


def test_image_from_a_named_pipe(exe, work):
    """A .npy written into a named pipe as the tool reads it: the tool
    opens the pipe once, and reads it whole (an open and close to sniff
    its format would leave the writer without a reader, and the bytes
    lost)."""
    os.mkfifo(work / "img.npy")
    import threading

    data = open_npy_bytes(IMG)

    def feed():
        with open(work / "img.npy", "wb") as f:
            f.write(data)
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    p = subprocess.run([exe, *export_args("img.npy", "out.npy"), "--quiet"], cwd=work,
                       capture_output=True, text=True, timeout=60)
    t.join(10)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    from numpy.lib.stride_tricks import sliding_window_view
    want = sliding_window_view(IMG, (3, 3)).reshape(-1, 9).astype(np.float32)
    assert np.array_equal(np.load(work / "out.npy"), want)


def open_npy_bytes(a):
    import io
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()
