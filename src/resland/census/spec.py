"""Sweep specs: a TOML file that names a grid of census runs.

A spec has top-level keys ``name``, ``seeds``, ``engine``, ``batch_size``, a ``[finder]``
table and one or more ``[[grid]]`` tables; every ``[[grid]]`` value may be a scalar or a
list, and a grid expands to the Cartesian product of its lists. See
``examples/census-quick.toml`` for a commented example and docs/census.md for the keys.

One *run* is a ``(config, seed)`` pair; its key in the store is
``(spec_hash, config_id, seed)``. ``spec_hash`` is the SHA-256 of the validated spec
(canonical JSON), ``config_id`` the SHA-256 of the run's config. Runs of one config are
grouped into tasks of at most ``batch_size`` seeds: the unit of work an executor runs.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .. import tolerances as T
from ..kinds import KINDS
from .._checks import ValidationError, check_choice, check_scalar
from ..data import BUILTIN, load_dataset
from ..losses import LOSSES
from ..families import FAMILIES, family
from ..models import ACTIVATIONS, param_count

TOP_KEYS = ("name", "seeds", "engine", "batch_size", "finder", "store", "grid")
STORE_KEYS = ("parameters",)
STORE_PARAMETERS = ("candidates", "all")
FINDER_KEYS = ("kind", "tol", "max_iter", "xtol", "max_norm", "kink_iter", "newton_always_max")
GRID_KEYS = ("data", "rho", "model", "depth", "width", "activation", "loss", "v_scale", "kind", "seeds", "regime",
             "max_params", "delta0", "max_iter", "core_depth", "core_width", "rows", "method")
#: Grid keys that enter a config only when given (older specs keep their config ids). ``max_iter``
#: overrides ``[finder] max_iter`` for the grid's configs (slow valleys, e.g. one-layer ReLU nets).
#: ``core_depth``/``core_width``: the finder runs on the seeded start of that smaller net (the *core*)
#: and its final point is embedded into the config's net by zero units (:mod:`resland.embedding`).
#: ``rows``: a seeded subsample of the data set (:func:`resland.data.subsample`); ``method``: the finder's method
#: (``steps`` or ``continuation``, :func:`resland.critical.find_critical_points`).
OPTIONAL_KEYS = ("delta0", "max_iter", "core_depth", "core_width", "rows", "method")
#: ``[[grid]] regime``: keep every config, or only those with fewer (``below_samples``: n < m)
#: or at least as many (``above_samples``) parameters n as samples m (docs/theory.md §7).
REGIMES = ("all", "below_samples", "above_samples")
ENGINES = ("batched", "sequential")
FINDER_DEFAULTS = {"kind": "minimum", "tol": T.GRAD_TOL, "max_iter": T.MAX_ITER, "xtol": T.XTOL, "max_norm": T.MAX_NORM}
GRID_DEFAULTS = {"model": "resnet", "depth": 1, "width": 4, "activation": "auto", "loss": "auto", "v_scale": 1.0}


@dataclass
class Task:
    """One unit of work: a config and up to ``batch_size`` seeds."""

    spec_hash: str
    config_id: str
    config: dict
    seeds: list[int]
    engine: str

    def keys(self) -> list[tuple[str, str, int]]:
        return [(self.spec_hash, self.config_id, s) for s in self.seeds]


@dataclass
class Spec:
    """A validated sweep spec. ``configs`` is the expanded grid (one dict per config)."""

    name: str
    seeds: list[int]
    engine: str
    batch_size: int
    finder: dict
    configs: list[dict]
    source: dict = field(repr=False, default_factory=dict)
    store: dict = field(default_factory=lambda: {"parameters": "candidates"})

    @property
    def task_options(self) -> dict:
        """What every task needs: the ``[finder]`` settings and the parameter-storage policy."""
        return dict(self.finder, store_parameters=self.store["parameters"])

    @property
    def spec_hash(self) -> str:
        return _sha(self.canonical())

    def canonical(self) -> dict:
        out = {"name": self.name, "seeds": self.seeds, "engine": self.engine, "batch_size": self.batch_size,
               "finder": self.finder, "configs": self.configs}
        if self.store != {"parameters": "candidates"}:  # the default keeps older spec hashes
            out["store"] = self.store
        return out

    def seeds_of(self, config: dict) -> list[int]:
        """The seeds of one config: its grid's ``seeds`` if given, else the spec's."""
        return config.get("seeds", self.seeds)

    @property
    def n_runs(self) -> int:
        return sum(len(self.seeds_of(c)) for c in self.configs)

    def tasks(self) -> list[Task]:
        """Every task of the census, configs in spec order, seeds in blocks of ``batch_size``."""
        h = self.spec_hash
        size = self.batch_size if self.engine == "batched" else 1
        return [Task(h, config_id(c), c, seeds[i : i + size], self.engine)
                for c in self.configs for seeds in [self.seeds_of(c)] for i in range(0, len(seeds), size)]


def run_settings(canonical: dict) -> dict:
    """What decides how a spec's runs are computed: its canonical form less ``name`` and the grid
    (engine, batch size, default seeds, ``[finder]``, ``[store]``). Two specs with equal settings
    give a shared ``(config_id, seed)`` the same run (:meth:`RunStore.adopt`)."""
    return {k: v for k, v in canonical.items() if k not in ("name", "configs")}


def config_id(config: dict) -> str:
    """SHA-256 (hex, first 16 characters) of a config's canonical JSON."""
    return _sha(config)[:16]


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load_spec(path: str | Path) -> Spec:
    """Read and validate a TOML spec; every error names the key and the allowed values.

    Raises:
        ValidationError: the file is missing or not TOML, or the spec is invalid
            (:func:`parse_spec`).
    """
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"The 'spec' file must exist. Got {str(path)!r}, which is not a file.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"The spec {path.name} is not valid TOML: {exc}.") from None
    return parse_spec(raw, base=path.resolve().parent)


def parse_spec(raw: dict, base: str | Path | None = None) -> Spec:
    """Validate a spec given as a dict (the parsed TOML). A relative .csv/.npz ``data`` path is resolved against
    ``base`` (the spec file's folder when read by :func:`load_spec`; the working directory when None).

    Raises:
        ValidationError: an unknown key or a bad value; the message names the key and what
            is allowed.
    """
    _known(raw, TOP_KEYS, "the spec")
    name = raw.get("name", "census")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"The 'name' key must be a non-empty string. Got {name!r}.")
    seeds = _seeds(raw.get("seeds", 4))
    engine = _choice("engine", raw.get("engine", "batched"), ENGINES)
    batch_size = _int("batch_size", raw.get("batch_size", 16), 1, 4096)
    finder_raw = raw.get("finder", {})
    if not isinstance(finder_raw, dict):
        raise ValidationError(f"The 'finder' key must be a table ([finder]). Got {finder_raw!r}.")
    _known(finder_raw, FINDER_KEYS, "[finder]")
    finder = dict(FINDER_DEFAULTS, **finder_raw)
    finder["kind"] = _choice("finder.kind", finder["kind"], KINDS)
    for k in ("tol", "xtol", "max_norm"):
        finder[k] = _float(f"finder.{k}", finder[k])
    finder["max_iter"] = _int("finder.max_iter", finder["max_iter"], 1, 100_000)
    if "kink_iter" in finder:   # only when given: older specs keep their hashes
        finder["kink_iter"] = _int("finder.kink_iter", finder["kink_iter"], 1, 100_000)
    if "newton_always_max" in finder:
        finder["newton_always_max"] = _int("finder.newton_always_max", finder["newton_always_max"], 0, 10**8)
    store_raw = raw.get("store", {})
    if not isinstance(store_raw, dict):
        raise ValidationError(f"The 'store' key must be a table ([store]). Got {store_raw!r}.")
    _known(store_raw, STORE_KEYS, "[store]")
    store = {"parameters": _choice("store.parameters", store_raw.get("parameters", "candidates"), STORE_PARAMETERS)}
    grids = raw.get("grid")
    if isinstance(grids, dict):
        grids = [grids]
    if not isinstance(grids, list) or not grids or not all(isinstance(g, dict) for g in grids):
        raise ValidationError("The 'grid' key must hold at least one [[grid]] table. Got none.")
    configs: list[dict] = []
    for i, g in enumerate(grids, start=1):
        for c in _expand(g, f"grid[{i}]", finder["kind"], base):
            if c not in configs:
                configs.append(c)
    return Spec(name, seeds, engine, batch_size, finder, configs, source=raw, store=store)


def _expand(g: dict, where: str, default_kind: str, base: str | Path | None = None) -> list[dict]:
    _known(g, GRID_KEYS, f"[[grid]] {where}")
    if "data" not in g:
        raise ValidationError(f"The '{where}.data' key is required: a data set name ({', '.join(BUILTIN)}) or a .csv/.npz path.")
    regime = _choice(f"{where}.regime", g.get("regime", "all"), REGIMES)
    max_params = _int(f"{where}.max_params", g["max_params"], 1, 10**9) if "max_params" in g else None
    seeds = _seeds(g["seeds"]) if "seeds" in g else None
    values = {k: g.get(k, GRID_DEFAULTS.get(k)) for k in GRID_KEYS if k not in ("seeds", "regime", "max_params")
              and (k in g or k not in OPTIONAL_KEYS)}
    values["kind"] = g.get("kind", default_kind)
    lists = {k: (v if isinstance(v, list) else [v]) for k, v in values.items()}
    for k, vs in lists.items():
        if not vs:
            raise ValidationError(f"The '{where}.{k}' key must not be an empty list.")
    out = []
    for combo in itertools.product(*lists.values()):
        c = _check_config(dict(zip(lists, combo)), where, base)
        if regime != "all" or max_params is not None:   # filters: they select configs, not change them
            m, d, k, own = _shape(c["data"], c["rho"])
            m = min(m, c.get("rows", m))
            k = k if c["loss"] in ("auto", own) else 1
            n = param_count(c["model"], d, width=c["width"], depth=c["depth"], block_bias="delta0" not in c, d_out=k)
            if regime != "all" and (n < m) != (regime == "below_samples"):
                continue
            if max_params is not None and n > max_params:
                continue
        if seeds is not None:
            c["seeds"] = seeds
        out.append(c)
    return out


@functools.lru_cache(maxsize=None)
def _shape(data: str, rho) -> tuple[int, int, int, str]:
    """``(m, d, k, loss)`` of a data set (loaded once per process): samples, features, outputs under its
    own loss, and that loss."""
    ds = load_dataset(data, rho=rho)
    return int(ds.X.shape[0]), int(ds.X.shape[1]), ds.outputs, ds.loss


def _check_config(c: dict, where: str, base: str | Path | None = None) -> dict:
    data = c["data"]
    if not isinstance(data, str) or not (data in BUILTIN or data.endswith((".csv", ".npz"))):
        raise ValidationError(f"The '{where}.data' value must be one of {', '.join(map(repr, BUILTIN))} or a "
                              f".csv/.npz path. Got {data!r}.")
    if data.endswith((".csv", ".npz")):
        c["data"] = str((Path(base) / data if base is not None else Path(data)).resolve())
    c["model"] = _choice(f"{where}.model", c["model"], tuple(FAMILIES))
    c["depth"] = _int(f"{where}.depth", c["depth"], 1, 256)
    c["width"] = _int(f"{where}.width", c["width"], 1, 4096)
    c["activation"] = _choice(f"{where}.activation", c["activation"], ("auto", *ACTIVATIONS))
    c["loss"] = _choice(f"{where}.loss", c["loss"], ("auto", *LOSSES))
    c["v_scale"] = _float(f"{where}.v_scale", c["v_scale"], allow_zero=True)
    c["kind"] = _choice(f"{where}.kind", c["kind"], KINDS)
    if data == "example1":
        if c["rho"] is None:
            raise ValidationError(f"The '{where}.rho' key is required for example1: a float in (0, inf).")
        c["rho"] = _float(f"{where}.rho", c["rho"])
    elif c["rho"] is not None:
        raise ValidationError(f"The '{where}.rho' key applies to example1 only. Got data {data!r}.")
    fam = family(c["model"])
    if "depth" not in fam.grid_keys:      # depth, width and activation do not apply (the linear model)
        c.update(depth=1, width=1, activation="auto")
    if "v_scale" not in fam.grid_keys:    # v_scale scales a ResNet's V_l: elsewhere a grid point is one config
        c["v_scale"] = 1.0
    if "max_iter" in c:
        c["max_iter"] = _int(f"{where}.max_iter", c["max_iter"], 1, 100_000)
    if "rows" in c:
        c["rows"] = _int(f"{where}.rows", c["rows"], 2, 10**8)
    if "method" in c:
        from ..critical import METHODS

        c["method"] = _choice(f"{where}.method", c["method"], METHODS)
    if "delta0" in c:           # a near-identity start of budget δ₀ (init_model): ResNets, v_scale 1
        c["delta0"] = _float(f"{where}.delta0", c["delta0"])
        if "delta0" not in fam.grid_keys or c["v_scale"] != 1.0:
            raise ValidationError(f"The '{where}.delta0' key applies to ResNets with v_scale 1 only. Got model "
                                  f"{c['model']!r}, v_scale {c['v_scale']!r}.")
    if "core_depth" in c or "core_width" in c:
        _check_core(c, where)
    return c


def _check_core(c: dict, where: str) -> None:
    """Validate a config's core (docs/theory.md §11); both keys are filled in once either is given."""
    from ..embedding import EMBEDDABLE

    c["core_depth"] = _int(f"{where}.core_depth", c.get("core_depth", c["depth"]), 1, c["depth"])
    c["core_width"] = _int(f"{where}.core_width", c.get("core_width", c["width"]), 1, c["width"])
    fam = family(c["model"])
    act = c["activation"] if c["activation"] != "auto" else fam.default_activation
    if act not in EMBEDDABLE:
        raise ValidationError(f"The '{where}.core_depth'/'core_width' keys need an activation with σ(0) = 0 and a "
                              f"derivative at 0 ({', '.join(EMBEDDABLE)}). Got {act!r}.")
    if not fam.residual and c["core_depth"] != c["depth"]:
        raise ValidationError(f"The '{where}.core_depth' key must equal the depth for model {c['model']!r} (only a "
                              f"ResNet has zero blocks). Got {c['core_depth']} and {c['depth']}.")
    if "delta0" in c:
        raise ValidationError(f"The '{where}.core_depth'/'core_width' keys do not combine with 'delta0'.")


def _known(table: dict, allowed: tuple, where: str) -> None:
    for k in table:
        if k not in allowed:
            raise ValidationError(f"Unknown key {k!r} in {where}. Allowed keys: {', '.join(allowed)}.")


def _choice(key: str, value, allowed) -> str:
    return check_choice(key, value, allowed, kind="key")


def _int(key: str, value, lo: int, hi: int) -> int:
    return check_scalar(value, key, int, min_val=lo, max_val=hi, kind="key")


def _float(key: str, value, allow_zero: bool = False) -> float:
    return check_scalar(value, key, float, min_val=0, include_boundaries="left" if allow_zero else "neither", kind="key")


def _seeds(value) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 1_000_000:
            raise ValidationError(f"The 'seeds' key must be a count in [1, 1000000] or a list of integers. Got {value!r}.")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63
                                                 for s in value):
        if len(set(value)) != len(value):
            raise ValidationError(f"The 'seeds' key must not repeat a seed. Got {value!r}.")
        return list(value)
    raise ValidationError(f"The 'seeds' key must be a count in [1, 1000000] or a non-empty list of integers >= 0. "
                          f"Got {value!r}.")
