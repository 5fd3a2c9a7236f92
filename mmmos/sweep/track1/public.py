"""The public ASTAR-NTU checkpoint layout: its model classes, their state-dict key names, and strict import into
this project's :class:`~mmmos.heads.dual_branch.DualBranchHead`.

The public code (``models/roberta_transformer.py``, ``models/base_models.py``) has one class per recipe variant;
each saves the whole ``net.state_dict()``: the frozen encoders (``muq.*``, ``roberta.*``), two buffers
(``audio_pos_encoder.pe``, ``bin_centers``) and the trainable head. Only the head is imported: the encoders are
this project's own (their frames come from the cache) and the buffers are constants the head recomputes.

Each public module maps onto one of ours by a key-prefix rename (:data:`COMMON` + the variant's own table);
module indices inside the output MLPs are the same on both sides (the heads follow the public dropout layout),
except CORAL's ``raw_outputs_layer``, which is the last Linear of our MLP (index ``3 * hidden layers``).
Dimensions are read from the tensors' shapes (so a small public-layout model imports too); the attention head
count cannot be, and is an argument (the public default is 4).

The import is strict: every missing, unexpected or mis-shaped key is listed, in the public names, in one
:class:`PublicLayoutError`; nothing is loaded partially.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from mmmos.core.errors import UserError

#: prefixes that are not the head: the frozen encoders and the constant buffers
IGNORED_PREFIXES = ("muq.", "roberta.")
IGNORED_KEYS = ("audio_pos_encoder.pe", "bin_centers")
#: wrappers a saved checkpoint may put around the state dict
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")

#: public prefix -> our prefix, shared by every variant
COMMON = {
    "audio_transformer_encoder.layers.0.": "encoder.",
    "audio_attentive_pool.attention_weights.": "mi_pool.score.",
    "text_seq_proj.": "text_proj.",
    "cross_attention.": "cross.",
    "cross_attention_norm.": "cross_norm.",
    "fused_attentive_pool.attention_weights.": "ta_pool.score.",
}
_MLP_HEADS = {"audio_seq_proj.": "audio_proj.", "overall_mlp.": "mi_out.mlp.", "coherence_mlp.": "ta_out.mlp."}
_CORAL = {"audio_seq_proj.": "audio_proj.", "overall_quality_head.shared_fc.": "mi_out.mlp.",
          "coherence_head.shared_fc.": "ta_out.mlp.",
          "overall_quality_head.raw_outputs_layer.": "mi_out.mlp.{last}.",
          "coherence_head.raw_outputs_layer.": "ta_out.mlp.{last}."}
_LSTM = {"audio_embed_to_common_for_crossattn.": "audio_proj.", "overall_lstm.": "mi_out.lstm.",
         "overall_fc.": "mi_out.fc.", "coherence_lstm.": "ta_out.lstm.", "coherence_fc.": "ta_out.fc."}


class PublicLayoutError(UserError):
    """A state dict that is not (all of) the public layout of the chosen variant."""


@dataclass(frozen=True)
class PublicVariant:
    """One public model class: the head options it equals and the key renames of its own modules."""

    name: str
    public_class: str
    head_cfg: dict
    loss: str
    renames: dict = field(default_factory=dict)

    def table(self) -> dict[str, str]:
        """Public prefix -> our prefix, longest first (so no prefix shadows a longer one)."""
        t = {**COMMON, **self.renames}
        return dict(sorted(t.items(), key=lambda kv: -len(kv[0])))


VARIANTS: dict[str, PublicVariant] = {v.name: v for v in (
    PublicVariant("distribution", "MuQRoBERTaTransformerDistributionPredictor", {"output": "distribution"},
                  "kl_gaussian", _MLP_HEADS),
    PublicVariant("decoupled", "MuQRoBERTaTransformerDecoupledDist", {"output": "distribution", "decoupled": True},
                  "kl_gaussian", _MLP_HEADS),
    PublicVariant("decoupled-lstm", "MuQRoBERTaTransformerLSTMHeadCrossAttnDecoupledPredictor",
                  {"output": "distribution", "decoupled": True, "lstm_head": True}, "kl_gaussian", _LSTM),
    PublicVariant("coral", "MuQRoBERTaTransformerDistributionPredictorCORALPredictor", {"output": "coral"},
                  "coral", _CORAL),
    PublicVariant("scalar", "MuQRoBERTaTransformerScalarPredictor", {"output": "scores"}, "l1", _MLP_HEADS),
)}


def get_variant(name: str) -> PublicVariant:
    """The variant ``name`` (or the public class name); a one-line error listing the choices otherwise."""
    for v in VARIANTS.values():
        if name in (v.name, v.public_class):
            return v
    raise PublicLayoutError(f"unknown public variant {name!r}; choose one of {', '.join(VARIANTS)}")


def recipe_variant(head_cfg: Mapping[str, Any]) -> PublicVariant:
    """The public class a recipe run's head options correspond to (one-hot and Gaussian share a class)."""
    def shape(cfg):
        return cfg.get("output", "distribution"), bool(cfg.get("decoupled")), bool(cfg.get("lstm_head"))

    for v in VARIANTS.values():
        if shape(v.head_cfg) == shape(head_cfg):
            return v
    raise PublicLayoutError(f"no public model class has head options {dict(head_cfg)}")


def unwrap(obj: Any, where: str = "checkpoint") -> dict:
    """The state dict inside a saved object (a bare state dict, or one under ``state_dict``/``model_state_dict``);
    a ``module.`` prefix on every key (DataParallel) is dropped."""
    import torch

    for k in WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(k), Mapping):
            obj = obj[k]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PublicLayoutError(f"{where}: not a state dict (a mapping of names to tensors)")
    if all(str(k).startswith("module.") for k in obj):
        obj = {str(k)[len("module."):]: v for k, v in obj.items()}
    return {str(k): v for k, v in obj.items()}


def _is_ignored(key: str) -> bool:
    return key.startswith(IGNORED_PREFIXES) or key in IGNORED_KEYS


def _n_hidden(state: Mapping[str, Any], prefix: str) -> int:
    """How many hidden Linear layers sit under ``prefix`` (CORAL's ``shared_fc``)."""
    idx = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.weight$", k))}
    return len(idx)


def to_ours(key: str, variant: PublicVariant, last: dict[str, int]) -> str | None:
    """Our name of public key ``key`` (None: not a key this variant has). ``last``: the CORAL output index per
    branch prefix."""
    for pub, ours in variant.table().items():
        if key.startswith(pub):
            branch = ours.split(".")[0]
            return ours.format(last=last.get(branch, 0)) + key[len(pub):]
    return None


def to_public(key: str, variant: PublicVariant, last: dict[str, int]) -> str:
    """The public name of our key ``key`` (the inverse of :func:`to_ours`; the longest matching prefix wins, so
    CORAL's last MLP Linear maps to ``raw_outputs_layer`` and the others to ``shared_fc``)."""
    best: tuple[str, str] | None = None
    for pub, ours in variant.table().items():
        ours = ours.format(last=last.get(ours.split(".")[0], 0))
        if key.startswith(ours) and (best is None or len(ours) > len(best[1])):
            best = (pub, ours)
    if best is None:
        raise KeyError(key)
    return best[0] + key[len(best[1]):]


def _linear_indices(ours: Mapping[str, Any], branch: str, coral: bool) -> list[int]:
    """The indices of the Linear layers of ``branch``'s output MLP, walked in our module layout (Linear, ReLU,
    Dropout after the first hidden layer, or after each for CORAL) while the weights are there; anything else
    under the MLP stays unexpected instead of changing the inferred depth."""
    idx, i = [], 0
    while f"{branch}.mlp.{i}.weight" in ours:
        idx.append(i)
        i += 3 if (coral or len(idx) == 1) else 2
    return idx


def _dims(ours: Mapping[str, Any], defaults: Mapping[str, Any], coral: bool) -> dict:
    """Head sizes read from our-named tensors; a size whose tensor is missing keeps the default (the strict
    comparison then reports the key). ``k``: the output width (None: not found)."""
    def shape(k, i):
        t = ours.get(k)
        return int(t.shape[i]) if t is not None and t.dim() > i else None

    def hidden(branch):
        idx = _linear_indices(ours, branch, coral)
        return [shape(f"{branch}.mlp.{i}.weight", 0) for i in idx[:-1]] if len(idx) > 1 else None

    found = {"in_dim": shape("encoder.self_attn.in_proj_weight", 1), "ff_dim": shape("encoder.linear1.weight", 0),
             "text_dim": shape("text_proj.weight", 1), "ta_dim": shape("text_proj.weight", 0),
             "mi_hidden": hidden("mi_out"), "ta_hidden": hidden("ta_out"),
             "mi_lstm": shape("mi_out.lstm.weight_hh_l0", 1), "ta_lstm": shape("ta_out.lstm.weight_hh_l0", 1)}
    out = {k: (v if v is not None else defaults[k]) for k, v in found.items()}
    mi = _linear_indices(ours, "mi_out", coral)
    out["k"] = shape("mi_out.fc.weight", 0) or (shape(f"mi_out.mlp.{mi[-1]}.weight", 0) if mi else None)
    return out


DEFAULTS = {"in_dim": 1024, "ff_dim": 2048, "text_dim": 768, "ta_dim": 768, "mi_hidden": [512, 256],
            "ta_hidden": [384, 192], "mi_lstm": 512, "ta_lstm": 384}


def import_public(state: Mapping[str, Any], variant: str | PublicVariant, n_heads: int = 4, dropout: float = 0.3,
                  where: str = "checkpoint"):
    """A :class:`DualBranchHead` (eval mode) holding the public-layout ``state``'s head weights, loaded strictly.

    Raises :class:`PublicLayoutError` naming every missing, unexpected and mis-shaped key (public names)."""
    from mmmos.heads import build_head, rebuild

    v = variant if isinstance(variant, PublicVariant) else get_variant(variant)
    state = unwrap(state, where)
    last = {"mi_out": 3 * _n_hidden(state, "overall_quality_head.shared_fc."),
            "ta_out": 3 * _n_hidden(state, "coherence_head.shared_fc.")}
    ours, unexpected = {}, []
    for k, t in state.items():
        if _is_ignored(k):
            continue
        name = to_ours(k, v, last)
        (unexpected.append(k) if name is None else ours.__setitem__(name, t))
    coral = v.head_cfg["output"] == "coral"
    d = _dims(ours, {**DEFAULTS, **({"ta_hidden": [512, 256]} if coral else {})}, coral)
    k_out = d.pop("k")
    cfg = {**v.head_cfg, **d, "n_heads": n_heads, "dropout": dropout}
    if v.head_cfg["output"] == "distribution" and k_out:
        cfg["num_bins"] = k_out
    try:
        head = build_head("dual_branch", cfg.pop("in_dim"), n_axes=2, **cfg)
    except (TypeError, ValueError) as e:
        raise PublicLayoutError(f"{where}: the tensors' sizes give no valid {v.public_class} ({e})") from None
    want = head.state_dict()
    missing = [to_public(k, v, last) for k in want if k not in ours]
    unexpected += [to_public(k, v, last) for k in ours if k not in want]
    shaped = [f"{to_public(k, v, last)} {list(ours[k].shape)} (expected {list(t.shape)})"
              for k, t in want.items() if k in ours and ours[k].shape != t.shape]
    problems = [f"{what}: {', '.join(sorted(keys))}" for what, keys in
                (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)) if keys]
    if problems:
        raise PublicLayoutError(f"{where} is not a {v.public_class} state dict: " + "; ".join(problems))
    return rebuild(head.config, {k: ours[k].detach().float() for k in want})


def public_names(head, variant: str | PublicVariant) -> dict[str, str]:
    """Our key -> the public key, for every tensor of ``head`` (what an exporter back to the public layout uses)."""
    v = variant if isinstance(variant, PublicVariant) else get_variant(variant)
    last = {b: 3 * len(head.config[f"{p}_hidden"]) for b, p in (("mi_out", "mi"), ("ta_out", "ta"))}
    return {k: to_public(k, v, last) for k in head.state_dict()}


__all__ = ["IGNORED_KEYS", "IGNORED_PREFIXES", "PublicLayoutError", "PublicVariant", "VARIANTS", "get_variant",
           "import_public", "public_names", "recipe_variant", "unwrap"]
