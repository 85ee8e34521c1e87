"""Distinct points (docs/theory.md §9) and the gradient-flat outcome, against references that do not go
through the finder: predictions by a plain forward pass, symmetries applied by hand, dense Hessians."""

import math

import numpy as np
import torch

import resland
from resland.models import ResNet
from resland.outcomes import GRADIENT_FLAT_TOL, gradient_flatness, outcome_of
from resland.points import count_distinct, family_key, point_id, same_point


def _net(seed=0, d=3, width=3, depth=2):
    torch.manual_seed(seed)
    return ResNet(d, width, depth, "tanh")


def _pred(net, X):
    with torch.no_grad():
        return net(torch.as_tensor(X)).numpy()


def test_a_tanh_sign_flip_and_a_unit_permutation_are_one_point_and_a_moved_net_is_another():
    """(U_i, b_i, V_i) → (−U_i, −b_i, −V_i) and swapping two units of a block leave the predictions exactly as
    they are (tanh is odd): one point by the rule and by the id. A change of 1e-6 in one weight is another."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    y = rng.standard_normal(50)
    net = _net()
    other = _net()
    with torch.no_grad():
        blk = other.blocks[0]
        lin = blk.branch[0]
        lin.weight[0].neg_(), lin.bias[0].neg_(), blk.V.weight[:, 0].neg_()            # sign flip of unit 0
        perm = torch.tensor([1, 0, 2])
        lin.weight.copy_(lin.weight[perm]), lin.bias.copy_(lin.bias[perm])
        blk.V.weight.copy_(blk.V.weight[:, perm])                                        # swap units 0 and 1
    pa, pb = _pred(net, X), _pred(other, X)
    ra, rb = float(np.mean((pa - y) ** 2)), float(np.mean((pb - y) ** 2))
    fam = family_key(net.config())
    assert not torch.equal(torch.nn.utils.parameters_to_vector(net.parameters()),
                           torch.nn.utils.parameters_to_vector(other.parameters()))
    assert same_point(ra, pa, rb, pb) and point_id(fam, "sha", ra, pa) == point_id(fam, "sha", rb, pb)
    moved = _net()
    with torch.no_grad():
        moved.blocks[1].V.weight[0, 0] += 1e-3
    pc = _pred(moved, X)
    rc = float(np.mean((pc - y) ** 2))
    assert not same_point(ra, pa, rc, pc) and point_id(fam, "sha", ra, pa) != point_id(fam, "sha", rc, pc)
    # another family or other data: another point, whatever the numbers
    assert point_id(dict(fam, depth=3), "sha", ra, pa) != point_id(fam, "sha", ra, pa)
    assert point_id(fam, "other", ra, pa) != point_id(fam, "sha", ra, pa)
    assert count_distinct([{"point": point_id(fam, "sha", ra, pa)}, {"point": point_id(fam, "sha", rb, pb)},
                           {"point": point_id(fam, "sha", rc, pc)}, {"point": None}]) == 2


def test_gradient_flatness_against_a_dense_reference_and_its_outcome():
    """‖H∇R‖/(‖H‖‖∇R‖) of H = diag(2, 1, 0): 0 when ∇R is the null direction, 1/2 along the middle one; the
    outcome is gradient_flat only below GRADIENT_FLAT_TOL, and unresolved above it."""
    H = torch.diag(torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64))
    flat = gradient_flatness(H, torch.tensor([0.0, 1e-9, 3e-3], dtype=torch.float64))
    assert math.isclose(flat["ratio"], 1e-9 / (2 * math.hypot(1e-9, 3e-3)), rel_tol=1e-12)
    assert flat["h_norm"] == 2.0 and flat["tol"] == GRADIENT_FLAT_TOL

    class Fit:
        risk = risk_lower = 1.0

    out, note = outcome_of("stalled", None, Fit, None, flat)
    assert out == "gradient_flat" and "near-null space" in note
    steep = gradient_flatness(H, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    assert steep["ratio"] == 0.5 and outcome_of("stalled", None, Fit, None, steep)[0] == "unresolved"
    # the evidence of a critical point or of a run to infinity comes first
    assert outcome_of("converged", None, Fit, None, flat)[0] == "critical"
    assert outcome_of("diverging", None, Fit, None, flat)[0] == "diverging"


def test_gradient_flat_is_an_outcome_of_the_census_and_keeps_its_parameters():
    from resland.census.runner import CANDIDATES
    from resland.census.row import KEEP_PARAMETERS

    assert "gradient_flat" in resland.OUTCOMES and "gradient_flat" in CANDIDATES["outcomes"]
    assert "gradient_flat" in KEEP_PARAMETERS["outcomes"]
