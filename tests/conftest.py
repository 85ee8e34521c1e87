"""Shared fixtures and independent references for the tests (float64 throughout)."""

import numpy as np
import pytest
import torch
from torch.func import functional_call

import resland

# Loss formulas written out here, independent of resland.losses (mean risk, no 1/2).
REF_LOSSES = {
    "squared": lambda p, y: ((p - y) ** 2).mean(),
    "logistic": lambda p, y: torch.log1p(torch.exp(-y * p)).mean(),
    "pseudo_huber": lambda p, y: (torch.sqrt(1 + (p - y) ** 2) - 1).mean(),
}


def reference_hessian(model, X, y, loss="squared"):
    """Dense Hessian by reverse-over-reverse autograd (torch.autograd.functional.hessian)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    X = torch.as_tensor(X, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)

    def risk(t):
        pieces = torch.split(t, [int(np.prod(s)) for s in shapes])
        params = {n: p.reshape(s) for n, p, s in zip(names, pieces, shapes)}
        out = functional_call(model, params, (X,)).reshape(-1)
        return REF_LOSSES[loss](out, y)

    H = torch.autograd.functional.hessian(risk, theta)
    return 0.5 * (H + H.T)


def assert_close(actual, expected, rtol, atol=0.0, what="value"):
    """Assert closeness and print the entries that disagree."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    bad = ~np.isclose(a, e, rtol=rtol, atol=atol)
    if bad.any():
        idx = np.argwhere(bad)[:5]
        rows = [f"  at {tuple(i)}: got {a[tuple(i)]!r}, expected {e[tuple(i)]!r}" for i in idx]
        raise AssertionError(f"{what}: {bad.sum()} entries differ beyond rtol={rtol}, atol={atol}\n" + "\n".join(rows))


@pytest.fixture
def small_data():
    g = torch.Generator().manual_seed(7)
    X = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] + 0.1 * torch.randn(40, generator=g, dtype=torch.float64)
    return X, y


@pytest.fixture
def binary_data():
    g = torch.Generator().manual_seed(11)
    X = torch.randn(50, 3, generator=g, dtype=torch.float64)
    logits = 1.5 * X[:, 0] - X[:, 1] + 0.8 * torch.randn(50, generator=g, dtype=torch.float64)
    y = torch.where(logits > 0, 1.0, -1.0).to(torch.float64)
    return X, y


@pytest.fixture
def noisy_teacher_data():
    """m = 60 targets from a tanh teacher ResNet (d = 2, k = 2, L = 1) plus noise of sd 0.3.

    Students of the same size have finite local minima here (most seeds converge)."""
    torch.manual_seed(123)
    X = torch.randn(60, 2, dtype=torch.float64)
    teacher = resland.ResNet(2, 2, 1, "tanh")
    with torch.no_grad():
        for p in teacher.parameters():
            p.mul_(2.0)
        y = teacher(X) + 0.3 * torch.randn(60, dtype=torch.float64)
    return X, y


def teacher_problem(seed=0, d=2, k=2, L=2, m=500, scale=2.0, noise=0.1, activation="tanh"):
    """Realizable data from a teacher ResNet (m ≫ n) and a student started near it.

    The default teachers are well conditioned: the smallest nonzero Hessian eigenvalue at
    the teacher is ≳ 1e-5 · λ_max (checked in test_critical), so float64 Newton reaches
    ‖∇R‖ ≤ 1e-10 there. Nearly unidentifiable teachers (eigenvalues ~1e-11) are not.
    """
    torch.manual_seed(seed)
    teacher = resland.ResNet(d, k, L, activation)
    with torch.no_grad():
        for p in teacher.parameters():
            p.mul_(scale)
    X = torch.randn(m, d, dtype=torch.float64)
    with torch.no_grad():
        y = teacher(X)
    student = resland.ResNet(d, k, L, activation)
    student.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(noise * torch.randn_like(p))
    return teacher, student, X, y


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """One `reproduce --paper all --quick` run shared by test_reproduce, test_audit and test_known."""
    from resland.paper.reproduce import reproduce

    out = tmp_path_factory.mktemp("reproduce")
    reproduce(out, quick=True, paper="all")
    return out
