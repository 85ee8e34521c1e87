"""Loading parameters from files, safely.

Two formats are accepted, both holding a ``state_dict`` (parameter name → tensor):

* ``.safetensors`` (read with :func:`safetensors.torch.load_file`: tensors only, no code);
* a PyTorch file (``torch.save``), read with ``torch.load(weights_only=True)``: tensors and
  plain containers only. A pickle that would build any other object, and so could run code,
  is refused before anything in it is executed.

Every tensor is checked against the target architecture (missing and unexpected names, and
shapes, each named in the error) and converted to float64 before the model is touched:
on any error the model is unchanged.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from ._checks import ValidationError


def _looks_like_text(path: Path) -> bool:
    """The file's first KiB decodes as UTF-8 without NUL bytes (a CSV, JSON or script, not a checkpoint)."""
    head = path.read_bytes()[:1024]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` mapping stored in ``path`` (each tensor in its parameter's shape; see the module docstring).

    Raises:
        ValidationError: a missing or unreadable file, a code-carrying pickle, or contents
            that are not a state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"The 'checkpoint' file must exist. Got {str(path)!r}, which is not a file.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValidationError(f"The checkpoint {path.name} is not a readable safetensors file: {exc}.") from None
    else:
        try:
            with warnings.catch_warnings():  # torch warns about pickle protocols; the verdict below is what matters
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            # torch's message suggests weights_only=False, i.e. running the file's code: report only what it found.
            found = [l.strip() for l in str(exc).splitlines() if "WeightsUnpickler error" in l or "Unsupported" in l]
            detail = found[0].replace("WeightsUnpickler error: ", "")[:200] if found else "not a plain state_dict"
            raise ValidationError(
                f"The checkpoint {path.name} was refused: it is a pickle that holds more than tensors "
                f"({detail}). Save a state_dict or a .safetensors file."
            ) from None
        except Exception as exc:   # any other failure of torch.load (a CSV file raises IndexError): not a checkpoint
            kind = "a text file" if _looks_like_text(path) else "not a readable PyTorch file"
            raise ValidationError(f"The checkpoint {path.name} is {kind} ({type(exc).__name__}): give a .safetensors "
                                  "file or a torch.save'd state_dict.") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValidationError(f"The checkpoint {path.name} must hold a state_dict: a mapping from parameter names "
                              f"to tensors. Got {type(state).__name__}.")
    return state


def load_parameters(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the parameters in ``path`` into ``model`` (float64), after checking every name and shape.

    Raises:
        ValidationError: the checkpoint cannot be read, or its names, shapes or dtypes do
            not match the model.
    """
    state = read_state_dict(path)
    params = dict(model.named_parameters())
    missing = [n for n in params if n not in state]
    unexpected = [n for n in state if n not in params]
    if missing or unexpected:
        raise ValidationError(
            f"The checkpoint {Path(path).name} does not match the architecture: "
            + "; ".join(p for p in (f"missing {', '.join(missing)}" if missing else "",
                                    f"unexpected {', '.join(unexpected)}" if unexpected else "") if p) + "."
        )
    for name, p in params.items():
        t = state[name]
        if tuple(t.shape) != tuple(p.shape):
            raise ValidationError(f"The checkpoint tensor {name!r} has shape {tuple(t.shape)}; the architecture "
                                  f"needs {tuple(p.shape)}.")
        if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64)):
            raise ValidationError(f"The checkpoint tensor {name!r} must be real numbers. Got dtype {t.dtype}.")
        if not torch.isfinite(t.to(torch.float64)).all():
            raise ValidationError(f"The checkpoint tensor {name!r} contains NaN or inf.")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name].to(p.dtype))
    return model
