"""scikit-learn end to end on the virtual patch matrix: fit on a labelled
sample of windows, then predict / decision_function over ALL windows, with
results identical to the same calls on the materialized matrix, and a peak
RSS far below the matrix (which is larger than the budget): scikit-learn
did not copy it."""

import gc

import numpy as np
import pytest
import sklearn
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.utils import check_array

import patchmap
from conftest import peak_rss, reset_peak_rss

MiB = 1 << 20
K = 16


def scene(side, seed=0):
    """A uint8 image of blobs in noise; labels: the blob mask at each
    window's centre, one per window (row of the patch matrix)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    mask = np.sin(yy / 37.0) * np.cos(xx / 23.0) > 0.2
    img = (mask * 60 + rng.normal(100, 25, (side, side))).clip(0, 255).astype(np.uint8)
    c = K // 2
    labels = mask[c:side - K + 1 + c, c:side - K + 1 + c].reshape(-1).astype(np.int64)
    return img, labels


def materialize(img, dtype):
    """numpy's patch matrix, scaled as the virtual one (in place: one copy)."""
    M = sliding_window_view(img, (K, K)).reshape(-1, K * K).astype(dtype)
    M *= dtype(1 / 255)
    M += dtype(0)
    return M


def test_check_array_does_not_copy():
    """check_array hands back the very object for a read-only C-contiguous
    float32 (or float64) array: no copy, no writeable requirement."""
    img, _ = scene(64)
    for dt in [np.float32, np.float64]:
        X = patchmap.windows(img, K, dtype=dt)
        for kw in [{}, dict(dtype=[np.float64, np.float32]), dict(dtype="numeric"),
                   dict(order="C"), dict(dtype=dt, order="C")]:
            assert check_array(X, **kw) is X, kw
    # What does copy: asking for another dtype (the estimator's business).
    X = patchmap.windows(img, K, dtype=np.float32)
    assert not np.shares_memory(check_array(X, dtype=np.float64), X)


# (estimator, matrix dtype, methods). LogisticRegression and SGDClassifier
# keep float64 coefficients in scikit-learn 1.2, and X_float32 @ coef_float64
# makes numpy cast all of X to a float64 temporary: give them a float64
# virtual matrix (free: it is never resident). RidgeClassifier and LDA keep
# float32 coefficients for float32 input.
CASES = [
    (lambda: LogisticRegression(max_iter=300), np.float64,
     ["decision_function", "predict", "predict_proba"]),
    (lambda: SGDClassifier(random_state=0), np.float64, ["decision_function", "predict"]),
    (lambda: RidgeClassifier(), np.float32, ["decision_function", "predict"]),
    (lambda: LinearDiscriminantAnalysis(), np.float32, ["decision_function", "predict"]),
]


@pytest.mark.parametrize("make,dtype,methods", CASES,
                         ids=["logreg-f64", "sgd-f64", "ridge-f32", "lda-f32"])
def test_estimator_over_all_windows(make, dtype, methods):
    side = 640 if dtype == np.float64 else 900
    img, labels = scene(side)
    budget = 64 * MiB
    X = patchmap.windows(img, K, dtype=dtype, affine=(1 / 255, 0), budget=budget)
    assert X.nbytes > 10 * budget  # ~750 MiB
    rng = np.random.default_rng(1)
    idx = np.sort(rng.choice(X.shape[0], 20000, replace=False))
    est = make().fit(X[idx], labels[idx])
    for m in methods:  # warm up BLAS and scikit-learn on a small slice
        getattr(est, m)(X[:500])
    gc.collect()

    rss0 = reset_peak_rss()
    got = {m: getattr(est, m)(X) for m in methods}
    grown = peak_rss() - rss0
    outputs = sum(v.nbytes for v in got.values())
    st = patchmap.stats(X)
    # No copy of X: the section grew by less than the budget, scikit-learn's
    # few output-sized temporaries and some slack, far below X itself.
    assert grown < budget + 4 * outputs + 48 * MiB, (grown, outputs)
    assert grown < X.nbytes / 8
    assert st.evictions > 0 and st.peak_resident_bytes <= st.budget_bytes
    assert (got["predict"] == labels).mean() > 0.95  # the model learnt something

    del X
    gc.collect()
    M = materialize(img, dtype)
    for m in methods:
        assert np.array_equal(getattr(est, m)(M), got[m]), m


def test_copy_would_be_seen():
    """The RSS check above can fail: a float64-coefficient model on a float32
    virtual matrix makes numpy cast X whole, and the peak shows it."""
    img, labels = scene(400)
    X = patchmap.windows(img, K, dtype=np.float32, affine=(1 / 255, 0), budget="32M")
    est = LogisticRegression(max_iter=200).fit(X[::50], labels[::50])
    assert est.coef_.dtype == np.float64
    est.decision_function(X[:500])
    gc.collect()
    rss0 = reset_peak_rss()
    est.decision_function(X)
    assert peak_rss() - rss0 > X.nbytes  # the float64 copy: 2x X


def test_blockwise_decision_function():
    """Row blocks of the virtual array are views: decision_function block by
    block bounds its temporaries and gives what the same blocks of the
    materialized matrix give. (Against one whole call, only close: BLAS
    sums a 1-row block in another order than a large one.)"""
    img, labels = scene(300)
    X = patchmap.windows(img, K, dtype=np.float32, affine=(1 / 255, 0), budget="16M")
    M = materialize(img, np.float32)
    est = RidgeClassifier().fit(X[::20], labels[::20])
    assert np.shares_memory(X[1000:2000], X)
    whole = est.decision_function(M)
    for rows in [1, 999, 4096, X.shape[0]]:
        got = patchmap.blockwise(est.decision_function, X, rows)
        assert np.array_equal(got, patchmap.blockwise(est.decision_function, M, rows))
        assert np.allclose(got, whole, rtol=1e-5, atol=1e-5)
    assert np.array_equal(patchmap.blockwise(est.predict, X, block_bytes="1M"),
                          patchmap.blockwise(est.predict, M, block_bytes="1M"))


def test_assume_finite_skips_a_pass():
    """scikit-learn's finiteness check reads X once more (a sum): with
    assume_finite it does not, which halves the faults of a lazy matrix."""
    img, labels = scene(300)
    X = patchmap.windows(img, K, dtype=np.float32, budget="8M", chunk="1M")
    est = RidgeClassifier().fit(X[::20], labels[::20])
    before = patchmap.stats(X).chunks_filled
    est.decision_function(X)
    checked = patchmap.stats(X).chunks_filled - before
    with sklearn.config_context(assume_finite=True):
        before = patchmap.stats(X).chunks_filled
        est.decision_function(X)
        assumed = patchmap.stats(X).chunks_filled - before
    n = -(-X.nbytes // (1 << 20))  # chunks in X
    b = patchmap.stats(X).budget_bytes >> 20  # chunks that may stay resident between passes
    assert n > 4 * b
    assert assumed >= n - b        # one pass at least...
    assert checked > 1.5 * assumed  # ...and the check's pass on top


@pytest.mark.parametrize("backend", ["uffd", "sigsegv", "eager"])
def test_blas_threads_fault_on_every_backend(backend):
    """OpenBLAS reads X from its own threads: their faults are served by
    every backend alike."""
    img, labels = scene(520)
    X = patchmap.windows(img, K, dtype=np.float32, affine=(1 / 255, 0), budget="16M",
                         backend=backend)
    est = RidgeClassifier().fit(X[::40], labels[::40])
    got = est.decision_function(X)
    assert patchmap.stats(X).backend == backend
    del X
    assert np.array_equal(got, est.decision_function(materialize(img, np.float32)))
