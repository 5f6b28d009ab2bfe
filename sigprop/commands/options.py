"""The spec options and the training options of the command line, each declared once.

:data:`OPTIONS` lists every option that sets a :class:`~sigprop.spec.Spec` field (plus ``--qk-std``, which is
converted to β): its flags, type and help with the convention it follows (docs/theory.md §1). Defaults are
not written here: they are ``Spec``'s dataclass defaults, or a command's own (``@spec_options(seq_len=256)``).

A command takes them all with :func:`spec_options`, which adds the options to the command's signature (what
typer reads) and hands the command the validated ``Spec`` as its ``spec`` argument::

    @spec_options(seq_len=256, rho0=0.2)
    def validate_cmd(out: ..., seeds: ..., spec: Spec, fmt: FormatO = Format.text) -> None: ...

A value the ``Spec`` refuses becomes a usage error (exit code 2, one line) naming the option, e.g.
``Invalid value for '--kv-heads': must be an integer in [1, heads=8] that divides heads; got 3``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, cast

import typer

from sigprop.spec import ACTIVATIONS, ATTENTIONS, BLOCKS, GATED, NORM_TYPES, NORMS, Spec, beta_from_std
from sigprop.training.config import TrainConfig


def _choices(name: str, values: Iterable[str]) -> type[Enum]:
    """A ``str`` Enum of the names the spec accepts (typer shows them and refuses others)."""
    return cast("type[Enum]", Enum(name, {v: v for v in values}, type=str))  # the functional API makes a class


Norm = _choices("Norm", NORMS)
Attention = _choices("Attention", ATTENTIONS)
ActivationName = _choices("ActivationName", ACTIVATIONS + tuple(GATED))
Block = _choices("Block", BLOCKS)
NormType = _choices("NormType", NORM_TYPES)

#: help panel of the architecture options
PANEL = "Architecture (conventions: docs/theory.md §1)"


@dataclass(frozen=True)
class SpecOption:
    """One command-line option that sets the ``Spec`` field ``name`` (``qk_std``: converted to ``beta``)."""

    name: str
    flags: tuple[str, ...]
    type: Any
    help: str
    case_sensitive: bool = True

    @property
    def flag(self) -> str:
        return self.flags[0]

    @property
    def annotation(self) -> Any:
        """``Annotated[type, typer.Option(...)]``, the form typer reads from a signature."""
        return Annotated[self.type, typer.Option(*self.flags, help=self.help, rich_help_panel=PANEL,
                                                 case_sensitive=self.case_sensitive)]

    def default(self, override: Any = dataclasses.MISSING) -> Any:
        """The command's default: ``override`` if given, else ``Spec``'s (an Enum member for choices)."""
        if override is dataclasses.MISSING:
            override = None if self.name == "qk_std" else _SPEC_DEFAULTS[self.name]
        if isinstance(self.type, type) and issubclass(self.type, Enum) and override is not None:
            return self.type(getattr(override, "value", override))
        return override


_SPEC_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Spec) if not f.name.startswith("_")}
_GATED_HELP = ", ".join(f"{k} ({v} gate)" for k, v in GATED.items())

OPTIONS: tuple[SpecOption, ...] = (
    SpecOption("depth", ("--depth", "-L"), int, "number of blocks L"),
    SpecOption("norm", ("--norm",), Norm, "post-LN (BERT) or pre-LN"),
    SpecOption("norm_type", ("--norm-type",), NormType, "layernorm, or rmsnorm (no mean subtraction; same map up to O(1/d))"),
    SpecOption("block", ("--block",), Block, "sequential (attention then MLP) or parallel (GPT-NeoX/GPT-J: x ← αx + SA(LN₁x) + MLP(LN₂x), α = α_SA)"),
    SpecOption("attention", ("--attention",), Attention, "softmax or centred (gain-controlled)"),
    SpecOption("activation", ("--activation",), ActivationName,
               f"MLP nonlinearity φ: {', '.join(ACTIVATIONS)}; or a gated MLP W₂(φ(W_g x + b_g) ⊙ (W_u x + b_u)) + b₂: "
               f"{_GATED_HELP}", case_sensitive=False),
    SpecOption("beta", ("--beta",), float, "β: W_Q, W_K ~ N(0, β sqrt(ln T)/d); Var(logit) = β² ln T (any head count)"),
    SpecOption("qk_std", ("--qk-std",), float | None, "plain std of W_Q, W_K (e.g. HF initializer_range); converted to β"),
    SpecOption("alpha_sa", ("--alpha-sa",), float, "α_SA, skip strength around attention (around the whole parallel block)"),
    SpecOption("alpha_mlp", ("--alpha-mlp",), float, "α_MLP, skip strength around the MLP"),
    SpecOption("sigma_w2", ("--sigma-w2",), float, "σ_w²: MLP input weights (W₁; W_g, W_u of a gated MLP) ~ N(0, σ_w²/d)"),
    SpecOption("sigma_w2_out", ("--sigma-w2-out",), float | None, "σ_w,out²: MLP output weights W₂ ~ N(0, σ_w,out²/d_ff) (default: σ_w²)"),
    SpecOption("sigma_v2", ("--sigma-v2",), float, "σ_v²: W_V ~ N(0, σ_v²/d)"),
    SpecOption("sigma_b2", ("--sigma-b2",), float, "σ_b²: bias variance (MLP; value too unless --sigma-bv2)"),
    SpecOption("sigma_bv2", ("--sigma-bv2",), float | None, "σ_bv²: value-bias variance (default: σ_b²; 0 = the paper's no-value-bias model, Fig 4)"),
    SpecOption("seq_len", ("--seq-len", "-T"), int, "T: sequence length (keys per row; ln T in the init)"),
    SpecOption("width", ("--width", "-d"), int, "model width d (torch twins; head width d_h = d/heads for RoPE)"),
    SpecOption("heads", ("--heads",), int, "attention heads (divide d; β does not depend on them)"),
    SpecOption("kv_heads", ("--kv-heads",), int | None, "key/value heads K of grouped-query attention (divides --heads; default: --heads)"),
    SpecOption("mlp_ratio", ("--mlp-ratio",), float, "MLP hidden width d_ff / d (torch twins)"),
    SpecOption("rope_fraction", ("--rope-fraction",), float, "fraction f of each head's dimensions rotated by RoPE (0 = no RoPE; f·d_h even)"),
    SpecOption("rope_theta", ("--rope-theta",), float, "RoPE base θ: frequencies θ^(-2i/r) over the r = f·d_h rotated dimensions"),
    SpecOption("window", ("--window",), int | None, "sliding-window attention: a causal row sees at most W keys (default: no window)"),
    SpecOption("causal", ("--causal",), bool, "decoder: row t sees t keys"),
    SpecOption("rho0", ("--rho0",), float, "ρ₀: mean cosine of the tokens entering block 1"),
    SpecOption("q0", ("--q0",), float, "q₀: mean squared norm per dimension entering block 1 (1 after an embedding LayerNorm; the pre-LN stream scale, e.g. GPT-2 ≈ 8e-4)"),
)

BY_NAME: dict[str, SpecOption] = {o.name: o for o in OPTIONS}
#: names in a library error that point at an option (``beta_from_std`` says "std")
_ERROR_NAMES = {**BY_NAME, "std": BY_NAME["qk_std"]}


def build_spec(**values: Any) -> Spec:
    """A scalar :class:`Spec` from spec-option values (by field name; missing ones take ``Spec``'s defaults).

    ``qk_std`` is converted to β with the spec's width and T (giving it together with ``--beta`` is refused by
    :func:`sigprop.cli.main`). Names that are not spec options are ignored, so a command may pass its
    ``locals()``. A RoPE fraction must rotate an even number of each head's ``d/heads`` dimensions.
    """
    kw = {k: getattr(v, "value", v) for k, v in values.items() if k in BY_NAME}
    qk_std = kw.pop("qk_std", None)
    if qk_std is not None:
        kw["beta"] = beta_from_std(qk_std, width=kw.get("width", _SPEC_DEFAULTS["width"]),
                                   seq_len=kw.get("seq_len", _SPEC_DEFAULTS["seq_len"]))
    spec = Spec(**kw)
    if spec.rope_fraction:
        spec.rope_dims  # noqa: B018  (raises ValueError when f·d_h is odd)
    return spec


def option_error(exc: ValueError) -> typer.BadParameter:
    """A usage error (exit code 2) naming the option behind a ``Spec``/library message ``"<field> must …"``."""
    msg = str(exc)
    first = re.match(r"[A-Za-z_]\w*", msg)
    opt = _ERROR_NAMES.get(first.group(0)) if first else None
    if opt is None or first is None:  # (opt is None whenever first is)
        return typer.BadParameter(msg)
    return typer.BadParameter(msg[first.end():].lstrip(), param_hint=f"'{opt.flag}'")


def spec_options(*, exclude: Iterable[str] = (), **defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command so that it takes every option of :data:`OPTIONS` (but ``exclude``) and receives the
    built ``Spec`` as its ``spec`` parameter. ``defaults`` override ``Spec``'s defaults for this command."""
    exclude = set(exclude)
    unknown = (exclude | set(defaults)) - set(BY_NAME)
    if unknown:
        raise TypeError(f"not spec options: {sorted(unknown)}")
    taken = [o for o in OPTIONS if o.name not in exclude]
    extra = [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, annotation=o.annotation,
                               default=o.default(defaults.get(o.name, dataclasses.MISSING))) for o in taken]

    def build(values: dict[str, Any], kwargs: dict[str, Any]) -> Spec:
        try:
            return build_spec(**values)
        except ValueError as exc:
            raise option_error(exc) from None

    return functools.partial(with_options, extra=extra, param="spec", build=build)


def with_options(fn: Callable[..., Any], *, extra: list[inspect.Parameter], param: str,
                 build: Callable[[dict[str, Any], dict[str, Any]], Any]) -> Callable[..., Any]:
    """``fn`` with the keyword options ``extra`` added to its signature (what typer reads); the wrapper takes
    their values out, calls ``build(values, other_kwargs)`` and passes the result to ``fn`` as ``param``."""
    hints = typing.get_type_hints(fn, include_extras=True)
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
           for p in inspect.signature(fn).parameters.values() if p.name != param]
    clash = {p.name for p in own} & {p.name for p in extra}
    if clash:
        raise TypeError(f"{fn.__name__} declares options itself that the decorator adds: {sorted(clash)}")
    names = [p.name for p in extra]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        values = {n: kwargs.pop(n) for n in names}
        return fn(**kwargs, **{param: build(values, kwargs)})

    params = own + extra
    del command.__wrapped__  # typer must read the new signature, not the function's own
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # functions take it at runtime
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


# --------------------------------------------------------------------------- training options
#: help panel of the training options
TRAIN_PANEL = "Training"
_TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


@dataclass(frozen=True)
class TrainOption:
    """One command-line option that sets the :class:`~sigprop.training.config.TrainConfig` field ``name``;
    ``convert`` maps the option's value to the field's (``--grad-clip 0`` → ``None``, off)."""

    name: str
    flags: tuple[str, ...]
    type: Any
    help: str
    convert: Callable[[Any], Any] | None = None

    def parameter(self, default: Any = dataclasses.MISSING, help: str | None = None) -> inspect.Parameter:
        """The keyword parameter typer reads: ``TrainConfig``'s default unless the command gives its own."""
        value = _TRAIN_DEFAULTS[self.name] if default is dataclasses.MISSING else default
        option = typer.Option(*self.flags, help=help or self.help, rich_help_panel=TRAIN_PANEL)
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[self.type, option],
                                 default=value)


def _off_if_zero(v: float) -> float | None:
    return v or None


TRAIN_OPTIONS: tuple[TrainOption, ...] = (
    TrainOption("corpus", ("--corpus",), str, "synthetic | fortunes | PATH (text file or folder) | hf:NAME[:CONFIG]"),
    TrainOption("steps", ("--steps",), int, "optimiser steps"),
    TrainOption("batch_size", ("--batch-size", "-B"), int, "sequences per step"),
    TrainOption("lr", ("--lr",), float, "peak learning rate (AdamW, linear warmup then linear decay)"),
    TrainOption("warmup", ("--warmup",), float, "warmup fraction of the steps"),
    TrainOption("weight_decay", ("--weight-decay",), float, "AdamW weight decay (matrices only)"),
    TrainOption("grad_clip", ("--grad-clip",), float, "max gradient norm (0: off)", _off_if_zero),
    TrainOption("seed", ("--seed",), int, "model init, data order, masking, dropout"),
    TrainOption("vocab_size", ("--vocab-size",), int, "WordPiece vocabulary size"),
    TrainOption("mlm_probability", ("--mlm-probability",), float, "masking rate (encoder)"),
    TrainOption("dropout", ("--dropout",), float, "dropout on attention and branch outputs"),
    TrainOption("emb_std", ("--emb-std",), float, "token embedding std"),
    TrainOption("pos_std", ("--pos-std",), float, "position embedding std"),
    TrainOption("freeze_uniform_attention", ("--freeze-uniform-attention",), bool,
                "fix attention to uniform (control: what does attention learn?)"),
    TrainOption("eval_every", ("--eval-every",), int | None, "evaluate every N steps (default steps/20)"),
    TrainOption("eval_rows", ("--eval-rows",), int, "test rows in the fixed evaluation subset"),
    TrainOption("checkpoint_every", ("--checkpoint-every",), int | None,
                "checkpoint every N steps (default max(eval interval, steps/10))"),
    TrainOption("device", ("--device",), str, "cpu or cuda"),
    TrainOption("threads", ("--threads",), int, "torch CPU threads"),
    TrainOption("n_stories", ("--n-stories",), int | None, "synthetic corpus size (stories)"),
)
TRAIN_BY_NAME: dict[str, TrainOption] = {o.name: o for o in TRAIN_OPTIONS}


def train_options(*names: str, helps: dict[str, str] | None = None,
                  **defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command so that it takes the training options ``names`` of :data:`TRAIN_OPTIONS` (all when
    none are named) and receives the built ``TrainConfig`` as its ``config`` parameter (``seq_len`` is the
    spec's T, so the command must also take ``spec``; use under :func:`spec_options`). ``defaults`` and
    ``helps`` override ``TrainConfig``'s defaults and the declared help for this command. A value
    ``TrainConfig`` refuses is one line on stderr and exit code 2."""
    helps = helps or {}
    unknown = (set(names) | set(defaults) | set(helps)) - set(TRAIN_BY_NAME)
    if unknown:
        raise TypeError(f"not training options: {sorted(unknown)}")
    taken = [TRAIN_BY_NAME[n] for n in names] if names else list(TRAIN_OPTIONS)
    extra = [o.parameter(defaults.get(o.name, dataclasses.MISSING), helps.get(o.name)) for o in taken]

    def build(values: dict[str, Any], kwargs: dict[str, Any]) -> TrainConfig:
        fields = {o.name: o.convert(values[o.name]) if o.convert else values[o.name] for o in taken}
        try:
            return TrainConfig(seq_len=kwargs["spec"].seq_len, **fields)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return functools.partial(with_options, extra=extra, param="config", build=build)
