"""The padding and window semantics, against numpy: the library's matrix
(and the reference's, tests/ref.c) for 1-D arrays padded by up to several
times their length in every mode, and for 2-D arrays with channels, equals
numpy.pad + sliding_window_view + reshape, bit for bit.

numpy.pad's reflect, symmetric and wrap are meant to repeat the mirrored or
periodic axis for any pad width, but for pads wider than the axis and
unequal on the two sides some numpy versions do not: wrap before
numpy/numpy#22575 (issue #22464), reflect and symmetric in
numpy/numpy#25926. Each case is therefore also built from the definition
(an index map: x[i mod n], mirrored for reflect and symmetric) with numpy;
the library must equal that, and numpy.pad must equal it too except in
those modes for pads wider than the axis, where a difference is counted
and reported as numpy's, not hidden.

The dtype conversions, against numpy's astype: every source dtype to
itself, float32 and float64 (and with scale/offset, as
x.astype(t) * t(scale) + t(offset)), padded with a constant that the
source dtype holds (float16: rounded from a double, as numpy does), bytes
compared. The samples include int64 values above 2^24 and 2^53 and next to
rounding ties, uint64 above 2^63, every one of the 65536 float16 bit
patterns (subnormals, infinities, quiet and signalling NaNs), and bool.

Usage: test-pad-numpy.py PATH-TO-pad-dump. Exit 0 pass, 1 fail, 77 skip."""
import subprocess
import sys

try:
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view
except ImportError:
    print("numpy is not installed: skipped")
    sys.exit(77)

MODES = ["zero", "constant", "edge", "reflect", "symmetric", "wrap"]
CONSTANT = -7.5


def numpy_pad(x, pads, mode):
    if mode == "zero":
        return np.pad(x, pads, mode="constant", constant_values=0)
    if mode == "constant":
        return np.pad(x, pads, mode="constant", constant_values=CONSTANT)
    return np.pad(x, pads, mode=mode)


def source_index(i, n, mode):
    """Where padded coordinate i (an array, 0 = first sample) reads from,
    -1 for the constant, by the definition of each mode."""
    if mode in ("zero", "constant"):
        return np.where((i >= 0) & (i < n), i, -1)
    if mode == "edge":
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return np.mod(i, n)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(i)
        m = np.mod(i, 2 * (n - 1))
        return np.where(m < n, m, 2 * (n - 1) - m)
    m = np.mod(i, 2 * n)  # symmetric
    return np.where(m < n, m, 2 * n - 1 - m)


def defined_pad(x, pads, mode):
    out = x
    for axis, (pb, pa) in enumerate(pads):
        n = x.shape[axis]
        idx = source_index(np.arange(-pb, n + pa), n, mode)
        out = np.take(out, np.maximum(idx, 0), axis=axis)
        shape = [1] * x.ndim
        shape[axis] = idx.size
        out = np.where((idx >= 0).reshape(shape), out, 0.0 if mode == "zero" else CONSTANT)
    return out


def samples(shape):
    return (1 + 1.25 * np.arange(int(np.prod(shape)), dtype=np.float64)).reshape(shape)


def windows(p, ks, steps, dils, nspatial):
    spans = tuple((k - 1) * d + 1 for k, d in zip(ks, dils))
    v = sliding_window_view(p, spans, axis=tuple(range(nspatial)))
    sel = tuple(slice(None, None, s) for s in steps) + (slice(None),) * (p.ndim - nspatial)
    sel += tuple(slice(None, None, d) for d in dils)
    return v[sel]


def want(spec, pad):
    """(matrix, pads) for a case, the padding done by `pad`."""
    mode, nd = spec[0], spec[1]
    if nd == 1:
        n, pb, pa, k, step, dil = spec[2:]
        p = pad(samples((n,)), ((pb, pa),), mode)
        return windows(p, (k,), (step,), (dil,), 1), ((n, pb, pa),)
    h, w, c, pb0, pa0, pb1, pa1, k0, k1, s0, s1, d0, d1, order = spec[2:]
    p = pad(samples((h, w, c)), ((pb0, pa0), (pb1, pa1), (0, 0)), mode)
    v = windows(p, (k0, k1), (s0, s1), (d0, d1), 2)  # (o0, o1, c, k0, k1)
    if order == "window":
        v = v.transpose(0, 1, 3, 4, 2)
    return v.reshape(v.shape[0] * v.shape[1], -1), ((h, pb0, pa0), (w, pb1, pa1))


def cases():
    for mode in MODES:
        for n in (1, 2, 3, 4, 7):
            # pads from none to several periods of the axis, both sides
            for pb, pa in ((0, 0), (1, 0), (0, 1), (n, n), (n + 1, 2), (2 * n + 3, 3 * n + 1),
                           (5 * n + 2, 0), (0, 4 * n + 3), (2, 7 * n + 1)):
                yield (mode, 1, n, pb, pa, 1, 1, 1)
                if n + pb + pa >= 5:
                    yield (mode, 1, n, pb, pa, 3, 2, 2)
        for order in ("window", "channel"):
            yield (mode, 2, 3, 4, 2, 4, 5, 1, 6, 2, 3, 1, 2, 1, 2, order)
            yield (mode, 2, 2, 3, 3, 5, 0, 2, 7, 3, 2, 3, 1, 2, 1, order)


RNG = np.random.default_rng(12)
INT64_SPECIAL = [0, 1, -1, 2**24 + 1, 2**24 + 3, 2**53 + 1, 2**53 + 3, -(2**53 + 1),
                 2**60 + 2**36, 2**60 + 2**36 + 1, 2**60 + 3 * 2**36, -(2**60 + 2**36 + 1),
                 2**60 + 2**7, 2**60 + 2**7 + 1, 2**60 + 3 * 2**7, 2**63 - 1, -2**63,
                 2**63 - 2**39, 2**63 - 2**38 - 1, -(2**63 - 2**38)]
UINT64_SPECIAL = [0, 1, 2**63, 2**63 + 1, 2**63 + 2**39, 2**63 + 2**39 + 1, 2**63 + 3 * 2**39,
                  2**64 - 1, 2**64 - 2**39, 2**64 - 2**39 - 1, 2**64 - 2**10, 2**64 - 2**10 - 1,
                  2**53 + 1, 2**24 + 1]
# (source dtype, samples, constant pad value the dtype holds)
def dtype_sources():
    ints = {}
    for name in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "uint64"):
        info = np.iinfo(name)
        x = RNG.integers(info.min, info.max, 200, dtype=name, endpoint=True)
        ext = [info.min, info.max, 0, 1]
        if name == "int64":
            ext += INT64_SPECIAL
        if name == "uint64":
            ext += UINT64_SPECIAL
        ints[name] = np.concatenate([np.array(ext, dtype=name), x])
    yield "uint8", ints["uint8"], 200
    yield "int8", ints["int8"], -100
    yield "uint16", ints["uint16"], 50000
    yield "int16", ints["int16"], -20000
    yield "uint32", ints["uint32"], 3000000000
    yield "int32", ints["int32"], -1999999993
    yield "int64", ints["int64"], -1152921504606851072.0   # -(2^60 + 4096)
    yield "uint64", ints["uint64"], 9223372036854777856.0  # 2^63 + 2048
    yield "bool", RNG.integers(0, 2, 100).astype(bool), 1
    yield "float16", np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16), 0.1
    f32 = np.array([0x00000000, 0x80000000, 0x7fc12345, 0x7f812345, 0x7f800000, 0xff800000,
                    0x7f7fffff, 0x00000001, 0x807fffff, 0x3dcccccd], np.uint32).view(np.float32)
    yield "float32", np.concatenate([f32, RNG.standard_normal(100).astype(np.float32)]), 0.1
    f64 = np.array([0x7ff8000012345678, 0x7ff0000000000001, 0x47efffffe0000000,
                    0x47efffffd0000000, 0x3ff0000010000000, 0x36a0000000000000, 0x1],
                   np.uint64).view(np.float64)
    yield "float64", np.concatenate([f64, RNG.standard_normal(100) * 1e5]), -1.5e-7


def dtype_cases():
    for src, x, pv in dtype_sources():
        k = 1 if src == "float16" else 3
        for out in ("same", "float32", "float64"):
            for affine in (0, 1):
                if affine and out == "same" and src not in ("float32", "float64"):
                    continue
                scale, offset = (0.37, -12.5) if affine else (1.0, 0.0)
                yield (src, out, "constant", pv, 2, 1, k, affine, scale, offset), x
        yield (src, "float64", "edge", 0, 1, 2, k, 0, 1.0, 0.0), x


def numpy_matrix(spec, x):
    src, out, mode, pv, pb, pa, k, affine, scale, offset = spec
    if mode == "constant":
        p = np.pad(x, (pb, pa), mode="constant", constant_values=pv)
    else:
        p = np.pad(x, (pb, pa), mode=mode)
    t = x.dtype if out == "same" else np.dtype(out)
    with np.errstate(all="ignore"):
        y = sliding_window_view(p, k).astype(t)
        if affine:
            y = y * t.type(scale) + t.type(offset)
    return np.ascontiguousarray(y)


def check_dtypes(exe):
    cases = list(dtype_cases())
    text = "".join("T " + " ".join(repr(v) if isinstance(v, float) else str(v) for v in spec)
                   + " " + x.tobytes().hex() + "\n" for spec, x in cases)
    out = subprocess.run([exe], input=text, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr[:2000], end="")
        print("pad-dump failed on the dtype cases")
        return 1
    lines = out.stdout.splitlines()
    if len(lines) != 3 * len(cases):
        print(f"pad-dump printed {len(lines)} lines for {len(cases)} dtype cases")
        return 1
    bad = 0
    for i, (spec, x) in enumerate(cases):
        want = numpy_matrix(spec, x)
        for line in lines[3 * i:3 * i + 3]:
            who, rows, cols, hexbytes = line.split()
            got = bytes.fromhex(hexbytes)
            if (int(rows), int(cols)) != want.shape or got != want.tobytes():
                bad += 1
                if bad <= 5:
                    g = np.frombuffer(got, want.dtype).reshape(int(rows), int(cols)) \
                        if len(got) == want.nbytes else got
                    diff = np.nonzero(g.view(np.uint8).ravel() != want.view(np.uint8).ravel())[0] \
                        if len(got) == want.nbytes else []
                    print(f"{who} differs from numpy for {spec}: first differing bytes at "
                          f"{diff[:8]}; got {g.ravel()[diff[:1] // want.itemsize]} want "
                          f"{want.ravel()[diff[:1] // want.itemsize]}")
    print(f"{len(cases)} dtype cases against numpy's astype: {bad} mismatches")
    return bad


def main():
    bad_dtypes = check_dtypes(sys.argv[1])
    specs = list(cases())
    text = "".join(" ".join(str(v) for v in s) + "\n" for s in specs)
    out = subprocess.run([sys.argv[1]], input=text, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr, end="")
        print("pad-dump failed")
        return 1
    lines = out.stdout.splitlines()
    if len(lines) != 3 * len(specs):
        print(f"pad-dump printed {len(lines)} lines for {len(specs)} cases")
        return 1
    bad = agree_wide = numpy_differs = 0
    for i, spec in enumerate(specs):
        expected, axes = want(spec, defined_pad)
        from_numpy, _ = want(spec, numpy_pad)
        wide = spec[0] in ("reflect", "symmetric", "wrap") and any(
            pb > n or pa > n for n, pb, pa in axes)
        if np.array_equal(from_numpy, expected):
            agree_wide += wide
        elif wide:
            numpy_differs += 1
            if numpy_differs <= 3:
                print(f"numpy.pad is not periodic for {spec} (a numpy bug, see the docstring)")
        else:
            bad += 1
            print(f"numpy.pad differs from the definition for {spec}:\n{from_numpy}\n"
                  f"definition:\n{expected}")
        for line in lines[3 * i:3 * i + 3]:
            who, rows, cols, *vals = line.split()
            got = np.array([float(v) for v in vals]).reshape(int(rows), int(cols))
            if got.shape != expected.shape or not np.array_equal(got, expected):
                bad += 1
                if bad <= 5:
                    print(f"{who} differs for {spec}:\n{got}\nwant:\n{expected}")
    print(f"{len(specs)} cases against numpy {np.__version__}: {bad} mismatches; "
          f"{agree_wide} with pads wider than the axis equal numpy.pad bit for bit, "
          f"{numpy_differs} where this numpy.pad is not periodic")
    # The wide cases must mostly be numpy's own numbers, not only ours.
    if agree_wide < 100:
        print("too few wide-pad cases where numpy.pad could be compared")
        bad += 1
    return 1 if bad or bad_dtypes else 0


if __name__ == "__main__":
    sys.exit(main())
