"""Load the base model, attach or load adapters, and save the artifact serving loads.

Every way a user can name the wrong thing (a missing folder, a model that is not a
causal LM, an adapter trained on another base or with other shapes) becomes an
InputError naming the config field, before any training starts.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import peft
import torch
from safetensors.torch import save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

from mtd_contract.config import LoraConfig
from mtd_contract.quantization import nf4_error

from .atomic import atomic_dir, write_json
from .errors import InputError
from .ranks import pad_factors, pad_peft_adapter, served_rank

log = logging.getLogger(__name__)

HUB_PREFIX = "hf://"


def model_source(name: str, field: str = "base_model") -> str:
    """What `from_pretrained` gets: an absolute local folder, or the hub id after hf://."""
    if name.startswith(HUB_PREFIX):
        return name.removeprefix(HUB_PREFIX)
    path = Path(name)
    if not path.exists():
        raise InputError(f"{field}: {name} does not exist (give a model folder or hf://ORG/NAME)")
    if not (path / "config.json").is_file():
        raise InputError(f"{field}: {name} is not a model folder (it has no config.json)")
    return str(path.resolve())


def local_folder(name: str) -> str:
    """A folder holding the model: `name` itself, or for hf://ORG/NAME its snapshot in the
    user's hub cache (fetched into that cache when missing and the hub is reachable; with
    HF_HUB_OFFLINE=1 only the cache is read)."""
    if not name.startswith(HUB_PREFIX):
        return name
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name.removeprefix(HUB_PREFIX).strip("/"))
    except (OSError, ValueError) as exc:  # offline and not cached, gated, unknown
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        message = f"base_model: {name}: not in the hub cache, not fetched ({first})"
        raise InputError(message) from None


def same_model(a: str, b: str) -> bool:
    """Whether two ways of naming a base model name the same one."""

    def key(name: str) -> str:
        name = name.removeprefix(HUB_PREFIX)
        return str(Path(name).resolve()) if Path(name).exists() else name.rstrip("/")

    return key(a) == key(b)


def causal_lm_source(name: str, field: str = "base_model") -> str:
    """`model_source`, checked to hold a causal LM config (read without the weights)."""
    source = model_source(name, field)
    try:
        config = AutoConfig.from_pretrained(source)
    except ValueError as exc:
        raise InputError(f"{field}: {name}: unreadable model config ({exc})") from None
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise InputError(
            f"{field}: {name} is a {config.model_type!r} model, not a causal language model"
        )
    return source


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    source = causal_lm_source(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"base_model: {name}: no usable tokenizer ({first})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass(frozen=True)
class Placement:
    """Where inference runs (evaluation, compose, calibration, local serving)."""

    device: str
    dtype: torch.dtype


def choose_placement(cuda: bool, bf16: bool) -> Placement:
    """CUDA when present, in bf16 where the GPU has it (fp32 on older GPUs, where fp16
    can overflow); fp32 on the CPU, where bf16 matmuls are slow and lossy."""
    if cuda:
        return Placement("cuda", torch.bfloat16 if bf16 else torch.float32)
    return Placement("cpu", torch.float32)


def local_placement() -> Placement:
    """`choose_placement` for this process's hardware (under torchrun: its own GPU)."""
    cuda = torch.cuda.is_available()
    placement = choose_placement(cuda, cuda and torch.cuda.is_bf16_supported())
    if cuda and "LOCAL_RANK" in os.environ:
        return Placement(f"cuda:{int(os.environ['LOCAL_RANK'])}", placement.dtype)
    return placement


def load_model(
    name: str,
    field: str = "base_model",
    dtype: torch.dtype = torch.float32,
    placement: Placement | None = None,
):
    """A causal LM from a folder or the hub; anything else is an InputError on `field`.

    With a `placement`, on its device and in its dtype (which then replaces `dtype`).
    """
    source = causal_lm_source(name, field)
    if placement is None:
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=placement.dtype)
    return model.to(placement.device)


def load_nf4_model(name: str) -> PreTrainedModel:
    """The base in 4-bit NF4 for QLoRA (Dettmers et al. 2023, arXiv:2305.14314): NF4 with
    double quantization, bf16 compute, as transformers' `BitsAndBytesConfig` documents;
    prepared for training the adapter on it (peft's `prepare_model_for_kbit_training`).
    Without CUDA or bitsandbytes an InputError names the field (the pod exits 2)."""
    problem = nf4_error("quantization", torch.cuda.is_available())
    if problem:
        raise InputError(problem)
    from transformers import BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    source = causal_lm_source(name, "base_model")
    model = AutoModelForCausalLM.from_pretrained(
        source, quantization_config=quantization, dtype=torch.bfloat16
    )
    return peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def compute_dtype() -> torch.dtype:
    """The dtype of a base that adapters train on: bf16 on a GPU that has it (the weights
    are frozen, so nothing accumulates in it), fp32 otherwise (CPU). Full fine-tuning
    trains the weights themselves and keeps fp32 (`load_model`'s default)."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def attach_lora(model: PreTrainedModel, lora: LoraConfig) -> peft.PeftModel:
    targets = "all-linear" if lora.target_modules == ["all-linear"] else lora.target_modules
    config = peft.LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    try:
        return peft.get_peft_model(model, config)
    except ValueError as exc:
        raise InputError(f"lora.target_modules: {exc}") from None


def load_adapter(
    model: PreTrainedModel, path: str, base_model: str, field: str, trainable: bool
) -> peft.PeftModel:
    """Load a peft adapter onto `model`, refusing one made for another base model."""
    config_file = Path(path) / "adapter_config.json"
    if not config_file.is_file():
        raise InputError(f"{field}: {path} is not a peft adapter (it has no adapter_config.json)")
    recorded = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if recorded and not same_model(recorded, base_model):
        raise InputError(f"{field}: {path} was trained on {recorded}, not on {base_model}")
    try:
        return peft.PeftModel.from_pretrained(model, path, is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        mismatches = [line for line in lines if "size mismatch" in line]
        detail = (
            f"{mismatches[0]} (and {len(mismatches) - 1} more)"
            if mismatches
            else (lines[0] if lines else type(exc).__name__)
        )
        message = f"{field}: {path} does not fit base model {base_model}: {detail}"
        raise InputError(message) from None


def engine_compatible_files(folder: Path) -> None:
    """Add to a transformers 5 model folder the legacy keys the serving engines read.

    transformers 5 writes RoPE settings only as config.json `rope_parameters`; TGI
    (server/text_generation_server/models/custom_modeling/flash_llama_modeling.py:151,
    `config.rope_theta = getattr(config, "rope_theta", 10000)`; layers/rotary.py:31 reads
    `rope_scaling`) and older vLLM read the top-level keys and otherwise silently serve
    theta 10000 unscaled, another model. So `rope_theta` (and for a scaled rope_type,
    `rope_scaling`: rope_parameters less rope_theta) are added; transformers reads them
    back to the same config. transformers 5 also saves the chat template only as
    chat_template.jinja (plus additional_chat_templates/*.jinja), while TGI's router reads
    it only from tokenizer_config.json (router/src/lib.rs:137 `HubTokenizerConfig`): every
    chat request would fail with TemplateNotFound. So `chat_template` is written there too
    (transformers still prefers the .jinja files, which are kept).
    (TGI lines as of commit db931fcf42da018a3657580c64bf2720f167f9ab.)"""
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope and "rope_theta" not in config:
        config["rope_theta"] = rope["rope_theta"]
        if rope.get("rope_type", "default") != "default" and not config.get("rope_scaling"):
            config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
        write_json(config_file, config)

    tokenizer_file = folder / "tokenizer_config.json"
    template_file = folder / "chat_template.jinja"
    if not (tokenizer_file.is_file() and template_file.is_file()):
        return
    tokenizer_config = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    if "chat_template" in tokenizer_config:
        return
    default = template_file.read_text(encoding="utf-8")
    extra = sorted((folder / "additional_chat_templates").glob("*.jinja"))
    if extra:  # the legacy form of several templates, TGI's `ChatTemplateVersions::Multiple`
        tokenizer_config["chat_template"] = [{"name": "default", "template": default}] + [
            {"name": path.stem, "template": path.read_text(encoding="utf-8")} for path in extra
        ]
    else:
        tokenizer_config["chat_template"] = default
    write_json(tokenizer_file, tokenizer_config)


def save_artifact(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    target: Path,
    served_ranks: list[int] | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save an adapter (peft format, as TGI loads it; zero-padded to a rank in
    `served_ranks` when given) or a full model, atomically. A sharded model passes its
    gathered `state_dict` (its own parameters are shards); a full model gets the legacy
    keys TGI reads (`engine_compatible_files`)."""
    with atomic_dir(target) as tmp:
        if state_dict is None:
            model.save_pretrained(tmp, safe_serialization=True)
        else:
            model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        if isinstance(model, peft.PeftModel):
            pad_peft_adapter(Path(tmp), served_ranks)
        else:
            tokenizer.save_pretrained(tmp)
            engine_compatible_files(Path(tmp))
    return target


def write_lora_adapter(
    target: Path,
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]],
    base_model: str,
    served_ranks: list[int] | None = None,
) -> Path:
    """An ordinary peft LoRA adapter from per-module (A [r, in], B [out, r]) factors.

    B carries every scale (gates, weights, α/r), so lora_alpha = r and peft's own scaling
    is 1: the adapter adds exactly B·A to each module, as TGI and peft load it. With
    `served_ranks`, r is first zero-padded to the next of them (B·A unchanged).
    """
    ranks = {a.shape[0] for a, _ in factors.values()}
    if len(ranks) != 1:
        raise ValueError(f"one rank per adapter, not {sorted(ranks)}")
    rank = served_rank(ranks.pop(), served_ranks)
    factors = pad_factors(factors, rank)
    config = peft.LoraConfig(
        r=rank,
        lora_alpha=rank,
        lora_dropout=0.0,
        target_modules=sorted({name.rsplit(".", 1)[-1] for name in factors}),
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_model,
    )
    tensors: dict[str, torch.Tensor] = {}
    for name, (a, b) in factors.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = a.detach().float().cpu().contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = b.detach().float().cpu().contiguous()
    with atomic_dir(target) as tmp:
        config.save_pretrained(str(tmp))
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
    return target
