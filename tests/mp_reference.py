"""Extended-precision references for the linear baseline, sharing no code with resland.linear.

* ``lstsq_infimum``: the exact infimum ``min_z ‖Az − y‖²/m`` of the float64 data, by mpmath's SVD at
  90 digits (singular values below ``1e-70·σ_max`` are exact zeros: no float64 design has a
  genuine direction that small).
* ``newton_infimum``: logistic or pseudo-Huber, Newton in 50-digit mpmath from a float64 start,
  until the Newton decrement is below 1e-40 (strictly convex, attained cases only).
"""

import mpmath
import numpy as np


def design(X, bias=True):
    X = np.asarray(X, dtype=np.float64)
    return np.c_[X, np.ones(len(X))] if bias else X


def lstsq_infimum(X, y, bias=True) -> mpmath.mpf:
    A = design(X, bias)
    with mpmath.workdps(90):
        M = mpmath.matrix([[mpmath.mpf(float(v)) for v in row] for row in A])
        b = mpmath.matrix([mpmath.mpf(float(v)) for v in y])
        U, S, _ = mpmath.svd_r(M, full_matrices=False, compute_uv=True)
        smax = max(S[i] for i in range(len(S)))
        keep = [j for j in range(len(S)) if S[j] > mpmath.mpf(10) ** -70 * smax]
        proj = mpmath.fsum((mpmath.fsum(U[i, j] * b[i] for i in range(len(y)))) ** 2 for j in keep)
        return (mpmath.fsum(v * v for v in b) - proj) / len(y)


def _loss(kind, p, y, delta=1.0):
    if kind == "logistic":
        return mpmath.log1p(mpmath.exp(-y * p))
    z = (p - y) / delta
    return delta**2 * (mpmath.sqrt(1 + z * z) - 1)


def _d12(kind, p, y, delta=1.0):
    if kind == "logistic":
        s = 1 / (1 + mpmath.exp(y * p))          # σ(−y p)
        return -y * s, s * (1 - s)
    z = (p - y) / delta
    q = 1 + z * z
    return (p - y) / mpmath.sqrt(q), q ** mpmath.mpf(-1.5)


def newton_infimum(X, y, kind, z0, bias=True, iters=60) -> mpmath.mpf:
    A = design(X, bias)
    m, k = A.shape
    with mpmath.workdps(50):
        M = [[mpmath.mpf(float(v)) for v in row] for row in A]
        Y = [mpmath.mpf(float(v)) for v in y]
        z = mpmath.matrix([mpmath.mpf(float(v)) for v in z0])
        for _ in range(iters):
            p = [mpmath.fsum(M[i][j] * z[j] for j in range(k)) for i in range(m)]
            d = [_d12(kind, p[i], Y[i]) for i in range(m)]
            g = mpmath.matrix([mpmath.fsum(d[i][0] * M[i][j] for i in range(m)) / m for j in range(k)])
            H = mpmath.matrix(k, k)
            for a in range(k):
                for b in range(a, k):
                    H[a, b] = H[b, a] = mpmath.fsum(d[i][1] * M[i][a] * M[i][b] for i in range(m)) / m
            step = mpmath.lu_solve(H, -g)
            z += step
            if abs(mpmath.fsum(-g[j] * step[j] for j in range(k))) < mpmath.mpf(10) ** -40:
                break
        p = [mpmath.fsum(M[i][j] * z[j] for j in range(k)) for i in range(m)]
        return mpmath.fsum(_loss(kind, p[i], Y[i]) for i in range(m)) / m
