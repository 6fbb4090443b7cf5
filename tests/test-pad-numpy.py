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


def main():
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
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
