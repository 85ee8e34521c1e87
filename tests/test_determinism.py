"""Determinism and resource guards of the CLI.

Same command, same seed: byte-identical JSON on one machine except the one `timing` object
that holds every wall-clock figure. A dense Hessian that would exceed --max-memory is refused
with its estimate, and the iterative solver gives the same verdict.
"""

import json
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "resland.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _keys(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + k
            yield from _keys(v, prefix + k + ".")


@pytest.mark.parametrize("args", [
    ("--data", "example2", "--depth", "2", "--width", "2", "--kind", "any", "--seed", "3"),
    ("--data", "diabetes", "--depth", "1", "--width", "2", "--activation", "tanh", "--max-iter", "5",
     "--seed", "1"),
])
def test_same_command_gives_byte_identical_json_apart_from_timing(args):
    a, b = run("certify", *args, "--json"), run("certify", *args, "--json")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert set(ja["timing"]) <= {"finder_seconds", "certify_seconds"}
    ta, tb = ja.pop("timing"), jb.pop("timing")
    assert json.dumps(ja, sort_keys=True) == json.dumps(jb, sort_keys=True)
    assert not [k for k in _keys(ja) if "second" in k or "time" in k], "a wall-clock figure outside 'timing'"
    assert all(v >= 0 for v in ta.values()) and ta.keys() == tb.keys()


def test_max_memory_refuses_the_dense_hessian_and_falls_back_to_lanczos():
    args = ("--data", "example2", "--depth", "2", "--width", "2", "--activation", "tanh", "--kind", "any", "--seed",
            "3", "--json")
    dense, small = run("certify", *args), run("certify", *args, "--max-memory", "2KiB")
    assert dense.returncode == 0 and small.returncode == 0, dense.stderr + small.stderr
    assert small.stderr.startswith("note: a dense Hessian of ")
    cd, cs = json.loads(dense.stdout)["certificate"], json.loads(small.stdout)["certificate"]
    assert cd["eig_method"] == "dense" and cs["eig_method"] == "lanczos"
    assert cd["verdict"] == cs["verdict"]
    # The memory cap also moves the finder to its Krylov backend, which stops at another point of
    # the same saddle set (equal risk); λ_min agrees to the finder's distance to that set.
    assert json.loads(small.stdout)["finder"]["risk"] == pytest.approx(json.loads(dense.stdout)["finder"]["risk"],
                                                                        rel=1e-12)
    assert cs["lambda_min"] == pytest.approx(cd["lambda_min"], rel=1e-6)
    assert cd["lambda_min"] < -cd["tolerances"]["lambda_tol"] and cs["lambda_min"] < -cs["tolerances"]["lambda_tol"]
    res = run("certify", *args, "--max-memory", "lots")
    assert res.returncode == 2 and res.stderr.strip() == (
        "error: The 'max_memory' parameter must be a positive size such as 512MiB or 4GB. Got 'lots'.")
    res = run("certify", "--data", "diabetes", "--width", "100000000", "--depth", "4")
    assert res.returncode == 2 and "parameters (" in res.stderr and "the limit is 1e+08" in res.stderr


def test_a_relu_kink_polish_repeats_bit_for_bit_in_one_process():
    """The kink polish's multipliers come from an SVD least squares (gelsd): torch's default CPU
    driver (gelsy) gave different last bits on identical inputs, and this run (engel, a width-8
    ReLU ResNet that ends on a kink after about 30 iterations) then ended at different points."""
    import torch

    import resland
    from resland.models import init_model

    ds = resland.load_dataset("engel")
    thetas = []
    for _ in range(3):
        model = init_model("resnet", 1, width=8, depth=1, activation="relu", seed=0)
        cp = resland.find_critical_point(model, ds.X, ds.y, kind="minimum", max_iter=100, kink_iter=100)
        assert cp.outcome == "kink"
        thetas.append(torch.cat([p.detach().reshape(-1) for p in cp.model.parameters()]))
    assert all(torch.equal(thetas[0], t) for t in thetas[1:])
