"""Any peft method from a suite: ``methods.NAME: {peft_type: OFT, config: {...}}``.

The config is peft's own: its fields are checked against that type's config dataclass
(``PEFT_TYPE_TO_CONFIG_MAPPING``) before any run, with the dataclass's annotations as the
schema, so a new peft release brings its methods and their options with it. lorabench
sets what it owns: the task type (from the task's family), and ``r`` where the config has
one (the matrix's rank axis; the config's ``r`` is the method's default rank).

Validation imports peft (and so torch) only when a suite names a peft type; curated
methods (lora, dora, ...) keep validating without it.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import importlib.util
import re
import types
import typing
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args, get_origin

import yaml

from lorabench.errors import UsageError
from lorabench.methods.base import MethodContext
from lorabench.methods.peft_base import PEFT_TASK_TYPES, PeftMethod, target_modules
from lorabench.suite.typed import MISSING, Collector, _type_name
from lorabench.vocab import QUANTIZED

# Config fields lorabench sets itself (or that only make sense for a saved adapter).
SET_BY_LORABENCH = {
    "peft_type": "the method entry's `peft_type`",
    "task_type": "lorabench, from the task's family",
    "base_model_name_or_path": "peft, from the model",
    "revision": "peft, from the model",
    "inference_mode": "lorabench (training, then inference for evaluation)",
    "auto_mapping": "peft, for custom models",
}

# Types lorabench cannot run through get_peft_model on one task: the reason is the table's.
NOT_APPLICABLE = {
    "XLORA": "X-LoRA mixes already-trained LoRA adapters (`adapters` paths); it has nothing to train from scratch",
    "POLY": "Poly routes by task id: every batch needs `task_ids`, which lorabench's single-task data has not",
    "MULTITASK_PROMPT_TUNING": "multitask prompt tuning needs `task_ids` in every batch",
    "CARTRIDGE": "a Cartridge is a KV-cache prefix trained by self-study distillation, not by a task's loss",
}

# Types whose layers wrap torch.nn.Linear (and Conv2d/Embedding) but not transformers' Conv1D,
# which is every projection of GPT-2: peft raises (or, for OSF, wraps nothing and trains
# nothing), so validate refuses them on GPT-2 before a run. tests/test_peft_zoo.py keeps
# this set equal to the zoo's failing GPT-2 rows, each of which it runs.
CONV1D_UNSUPPORTED = frozenset(
    {"LOHA", "LOKR", "DELORA", "GLORA", "LILY", "PEANUT", "ADAMSS", "OFT", "BOFT", "HRA", "PSOFT", "ROAD", "MISS"}
    | {"C3A", "SHIRA", "SUPERTUNING", "BEFT", "OSF"}
)
CONV1D_MODEL_TYPES = ("gpt2",)

# Types whose training loop needs more than get_peft_model: lorabench's curated method drives it.
CURATED_ONLY = {
    "ADALORA": (
        "adalora",
        "AdaLoRA reallocates its rank budget after every optimizer step (update_and_allocate) on a schedule "
        "sized by the run's step count",
    ),
}


@dataclass(frozen=True)
class PeftTypeOptions:
    """A peft type and its config fields as written in the suite (``r`` lives in the rank axis)."""

    peft_type: str
    config: dict[str, Any] = field(default_factory=dict)


def peft_types() -> list[str]:
    """Every ``PeftType`` the installed peft ships (imports peft)."""
    from peft.utils.peft_types import PeftType

    return [t.value for t in PeftType]


def config_class(peft_type: str) -> Any:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    return PEFT_TYPE_TO_CONFIG_MAPPING[peft_type]


def config_fields(peft_type: str) -> dict[str, Any]:
    """The user-settable fields of ``peft_type``'s config: name → dataclasses.Field."""
    cls = config_class(peft_type)
    return {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in SET_BY_LORABENCH}


def field_default(f: Any) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return MISSING


def quantized_support(peft_type: str) -> bool:
    """Whether peft has bitsandbytes layers for this type (``tuners/<type>/bnb.py``).

    Types without them would wrap a ``Linear4bit``/``Linear8bitLt`` as a plain linear and
    compute on its packed weight, so lorabench refuses them on a quantised base.
    """

    module = config_class(peft_type).__module__.rsplit(".", 1)[0]  # peft.tuners.<type>
    return importlib.util.find_spec(f"{module}.bnb") is not None


class PeftTypeMethod(PeftMethod):
    """A peft method built from the suite's config; :func:`method_for` makes one per entry."""

    name = "peft"
    description = "any peft type from its own config: methods.NAME: {peft_type: OFT, config: {r: 8, ...}}"
    Options = PeftTypeOptions
    peft_type: ClassVar[str] = ""

    @classmethod
    def invalid_reason(cls, precision: str, model_type: str | None = None) -> str | None:
        if precision in QUANTIZED and cls.peft_type and not quantized_support(cls.peft_type):
            return (
                f"peft has no bitsandbytes layers for {cls.peft_type} (it would adapt the packed {precision} "
                "weight as if it were a plain linear); peft's k-bit types are "
                + ", ".join(t for t in peft_types() if _safe_quantized(t))
            )
        if model_type in CONV1D_MODEL_TYPES and cls.peft_type in CONV1D_UNSUPPORTED:
            return (
                f"peft's {cls.peft_type} adapts torch.nn.Linear layers only, and {model_type}'s projections "
                "(c_attn, c_proj, c_fc) are transformers Conv1D modules"
            )
        return None

    def peft_config(self, ctx: MethodContext) -> Any:
        opts: PeftTypeOptions = ctx.options
        kwargs = plain(dict(opts.config))
        fields = config_fields(opts.peft_type)
        if ctx.rank is not None:
            kwargs["r"] = ctx.rank
        if "target_modules" in fields and "target_modules" not in kwargs and ctx.target_modules:
            kwargs["target_modules"] = target_modules(ctx, None)  # the model definition's override
        return config_class(opts.peft_type)(**kwargs, task_type=PEFT_TASK_TYPES[ctx.task_family])

    def resolved(self, model: Any, ctx: MethodContext) -> dict[str, Any]:
        out = super().resolved(model, ctx)
        r = getattr(model.peft_config["default"], "r", None)
        if isinstance(r, int):
            out["r"] = r
        return out


def _safe_quantized(peft_type: str) -> bool:
    try:
        return quantized_support(peft_type)
    except (KeyError, ImportError):
        return False


def method_for(name: str, options: PeftTypeOptions) -> type[PeftTypeMethod]:
    """The method class of one suite entry: its name, peft type and rank rules.

    ``uses_rank`` where the type's config has an ``r`` field; the default rank is the
    entry's ``r`` (kept in the rank axis, not in the config) or the dataclass's, when >= 1
    (OFT's default ``r`` is 0: it sizes blocks by ``oft_block_size`` unless a rank is given).
    """
    fields = config_fields(options.peft_type)
    default_rank = None
    if "r" in fields:
        r = options.config.get("r", field_default(fields["r"]))
        default_rank = r if isinstance(r, int) and not isinstance(r, bool) and r >= 1 else None
    attrs = {
        "name": name,
        "description": f"peft {options.peft_type} from the suite's config",
        "peft_type": options.peft_type,
        "uses_rank": "r" in fields,
        "default_rank": default_rank,
    }
    return type(f"PeftType_{options.peft_type}", (PeftTypeMethod,), attrs)


def plain(value: Any) -> Any:
    """JSON-shaped values (tuples → lists), as peft expects lists."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


# -- checking a config against the dataclass's annotations ------------------------------


def _enum_values(tp: Any) -> tuple[Any, ...] | None:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tuple(m.value for m in tp)
    return None


def _describe(tp: Any) -> str:
    values = _enum_values(tp)
    if values is not None:
        return "one of " + ", ".join(repr(v) for v in values)
    if get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return _type_name(tp)


def _check(tp: Any, value: Any) -> tuple[bool, Any]:
    """(ok, value) of YAML ``value`` against annotation ``tp``; values keep their YAML shape.

    A string stays a string where the annotation allows one (peft reads a string
    ``target_modules`` as a regex, a list as names), floats accept YAML's ``1e-3`` strings.
    """
    origin = get_origin(tp)
    if tp is Any:
        return True, value
    if tp is type(None):
        return value is None, value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        # Exact-kind branches first, so "all-linear" stays a string and 1 stays an int.
        for arg in sorted(args, key=lambda a: 0 if _exact(a, value) else 1):
            ok, out = _check(arg, value)
            if ok:
                return True, out
        return False, value
    if origin is Literal:
        return value in get_args(tp), value
    values = _enum_values(tp)
    if values is not None:
        return value in values, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, (int, float)):
            return True, float(value)
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value.strip()):
            return True, float(value)
        return False, value
    if tp is str:
        return isinstance(value, str), value
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set):
        if not isinstance(value, (list, tuple)):
            return False, value
        args = [a for a in get_args(tp) if a is not Ellipsis]
        item_tp = args[0] if args else Any
        out = []
        for v in value:
            ok, item = _check(item_tp, v)
            if not ok:
                return False, value
            out.append(item)
        return True, out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return False, value
        args = get_args(tp)
        if len(args) == 2:
            for v in value.values():
                if not _check(args[1], v)[0]:
                    return False, value
        return True, dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            return False, value
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        return set(value) <= names, dict(value)
    return False, value  # torch.dtype, callables, modules: not something a suite can state


def _exact(tp: Any, value: Any) -> bool:
    kinds = {str: str, bool: bool, int: int, float: float, type(None): type(None)}
    return tp in kinds and type(value) is kinds[tp]


def check_config(
    name: str,
    raw: Any,
    col: Collector,
    line: int | None,
    key_lines: dict[str, int] | None = None,
    where: str | None = None,
) -> PeftTypeOptions | Any:
    """Check one ``methods.NAME`` entry (``peft_type`` + ``config``); MISSING after recording issues."""
    where = where or f"methods.{name}"
    key_lines = key_lines or {}
    unknown = [k for k in raw if k not in ("peft_type", "config", "train")]
    for k in unknown:
        col.error(key_lines.get(k, line), f"{where}: unknown key {k!r}; a peft entry has `peft_type` and `config`")
    ptype = raw.get("peft_type")
    known = peft_types()
    if not isinstance(ptype, str) or ptype.upper() not in known:
        close = difflib.get_close_matches(str(ptype).upper(), known, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        col.error(
            key_lines.get("peft_type", line),
            f"{where}.peft_type: {ptype!r} is no peft type{hint}; peft has: {', '.join(known)}",
        )
        return MISSING
    ptype = ptype.upper()
    if ptype in CURATED_ONLY:
        curated, why = CURATED_ONLY[ptype]
        col.error(
            key_lines.get("peft_type", line),
            f"{where}.peft_type: use lorabench's `{curated}` method for {ptype}: {why}, which it drives",
        )
        return MISSING
    if ptype in NOT_APPLICABLE:
        col.error(
            key_lines.get("peft_type", line), f"{where}.peft_type: {ptype} does not apply: {NOT_APPLICABLE[ptype]}"
        )
        return MISSING
    config = raw.get("config") or {}
    cline = key_lines.get("config", line)
    if not isinstance(config, dict):
        col.error(cline, f"{where}.config: expected a mapping of {config_class(ptype).__name__} fields, got {config!r}")
        return MISSING
    fields = config_fields(ptype)
    hints = typing.get_type_hints(config_class(ptype))
    clines = getattr(config, "key_lines", {})
    out: dict[str, Any] = {}
    ok = True
    for key, value in config.items():
        kl = clines.get(key, cline)
        if key in SET_BY_LORABENCH:
            col.error(kl, f"{where}.config.{key}: set by {SET_BY_LORABENCH[key]}, not by the suite")
            ok = False
            continue
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            col.error(
                kl,
                f"{where}.config: unknown {config_class(ptype).__name__} field {key!r}{hint}; "
                f"fields: {', '.join(sorted(fields))}",
            )
            ok = False
            continue
        good, converted = _check(hints[key], value)
        if not good:
            col.error(kl, f"{where}.config.{key}: expected {_describe(hints[key])}, got {value!r}")
            ok = False
            continue
        out[key] = converted
    if not ok:
        return MISSING
    options = PeftTypeOptions(peft_type=ptype, config=out)
    if not _post_init_ok(options, where, col, cline, clines):
        return MISSING
    return options


def _post_init_ok(options: PeftTypeOptions, where: str, col: Collector, line: int | None, clines: dict) -> bool:
    """peft's own ``__post_init__`` checks (``oft_block_size`` with ``r``, ...), at the field they name."""
    message = refusal(options)
    if message is None:
        return True
    named = [k for k in re.findall(r"\w+", message) if k in clines]
    col.error(clines[named[0]] if named else line, f"{where}.config: peft refuses it: {message}")
    return False


def refusal(options: PeftTypeOptions, rank: int | None = None) -> str | None:
    """peft's ``__post_init__`` message for this config (with ``r`` = ``rank`` when given), else None."""

    kwargs = plain(options.config)
    if rank is not None:
        kwargs["r"] = rank
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config_class(options.peft_type)(**kwargs)
    except (ValueError, TypeError) as exc:
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__
    return None


def without_rank(options: PeftTypeOptions) -> PeftTypeOptions:
    """The options a run spec stores: ``r`` moves to the spec's rank axis."""
    return PeftTypeOptions(options.peft_type, {k: v for k, v in options.config.items() if k != "r"})


def from_command_line(method: str, config_text: str | None, target_modules: list[str] | None) -> PeftTypeOptions:
    """``--method peft:OFT --peft-config '{r: 8, ...}'`` as checked options, or a UsageError.

    The config is a YAML (or JSON) mapping, checked exactly as a suite's ``config`` is.
    """

    ptype = method.split(":", 1)[1]
    try:
        config = yaml.safe_load(config_text) if config_text else {}
    except yaml.YAMLError as exc:
        raise UsageError(f"--peft-config: not a YAML/JSON mapping: {exc}") from None
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise UsageError(f"--peft-config: expected a mapping of config fields, got {config!r}")
    if target_modules:
        config["target_modules"] = "all-linear" if target_modules == ["all-linear"] else target_modules
    col = Collector("--peft-config")
    opts = check_config(method, {"peft_type": ptype, "config": config}, col, None, where="--method " + method)
    if col.issues:
        raise UsageError("; ".join(i.message for i in col.issues))
    return opts
