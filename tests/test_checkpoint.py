"""Checkpoints: safetensors and weights-only state_dicts load; a pickle that carries code never runs."""

import json
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

import resland
from resland.checkpoint import load_parameters
from resland.models import init_model


def cli(*args):
    return subprocess.run([sys.executable, "-m", "resland.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def saddle_state(tmp_path):
    """A converged strict saddle of Example 2 (kind any, seed 0), saved both ways."""
    ds = resland.load_dataset("example2")
    cp = resland.find_critical_point(init_model("resnet", 1, width=2, depth=1, seed=0), ds.X, ds.y, kind="any")
    assert cp.converged
    state = {k: v.detach().clone() for k, v in cp.model.state_dict().items()}
    save_file(state, str(tmp_path / "cp.safetensors"))
    torch.save(state, tmp_path / "cp.pt")
    return cp, state


def test_both_formats_certify_the_saved_point_as_it_is(tmp_path):
    cp, _ = saddle_state(tmp_path)
    ds = resland.load_dataset("example2")
    ref = resland.certify(cp.model, ds.X, ds.y)
    for name in ("cp.safetensors", "cp.pt"):
        res = cli("certify", "--data", "example2", "--depth", "1", "--width", "2", "--checkpoint", tmp_path / name,
                  "--json")
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["finder"] is None  # certified as given, no search
        assert out["certificate"]["verdict"] == ref.verdict
        assert out["certificate"]["risk"] == pytest.approx(ref.risk, rel=1e-14)
    res = cli("certify", "--data", "example2", "--depth", "1", "--width", "2", "--checkpoint", tmp_path / "cp.pt",
              "--refine", "--kind", "any", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["finder"]["status"] == "converged"


class _Payload:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['RESLAND_PWNED'], 'w').write('ran')",))


def test_a_pickle_that_carries_code_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("RESLAND_PWNED", str(marker))
    evil = tmp_path / "evil.pt"  # torch.save's zip format, with a payload object inside
    torch.save({"out.weight": _Payload()}, evil)
    legacy = tmp_path / "legacy.pt"  # a bare pickle
    with open(legacy, "wb") as fh:
        pickle.dump({"out.weight": _Payload()}, fh)
    for path in (evil, legacy):
        res = cli("certify", "--data", "example2", "--width", "2", "--checkpoint", path)
        assert res.returncode == 2
        assert res.stderr.startswith(f"error: The checkpoint {path.name} was refused: it is a pickle that holds "
                                     "more than tensors") and res.stderr.count("\n") == 1, res.stderr
    assert not marker.exists(), "code in the checkpoint ran"
    model = init_model("resnet", 1, width=2)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(resland.ValidationError, match="refused"):
        load_parameters(model, evil)
    assert not marker.exists()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_shape_and_name_errors_name_the_tensor(tmp_path):
    _, state = saddle_state(tmp_path)
    model = init_model("resnet", 1, width=3)
    with pytest.raises(resland.ValidationError) as err:
        load_parameters(model, tmp_path / "cp.safetensors")
    assert str(err.value) == ("The checkpoint tensor 'blocks.0.branch.0.weight' has shape (2, 1); the architecture "
                              "needs (3, 1).")
    partial = {k: v for k, v in state.items() if k != "out.bias"} | {"extra": torch.zeros(1)}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(resland.ValidationError) as err:
        load_parameters(init_model("resnet", 1, width=2), tmp_path / "partial.pt")
    assert str(err.value) == "The checkpoint partial.pt does not match the architecture: missing out.bias; unexpected extra."
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    res = cli("certify", "--data", "example2", "--width", "2", "--checkpoint", tmp_path / "junk.safetensors")
    assert res.returncode == 2 and res.stderr.startswith("error: The checkpoint junk.safetensors is not a readable")
    res = cli("certify", "--data", "example2", "--refine")
    assert res.returncode == 2 and res.stderr.strip() == "error: The '--refine' option needs --checkpoint."
