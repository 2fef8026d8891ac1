"""What the trainer writes is what the serving engines can open and read the same way.

TGI's pod runs as root with every capability dropped, so it reads the trainer's (uid 65532)
files only through their "other" permission bits; and TGI reads the legacy config keys
`rope_theta` and tokenizer_config.json's `chat_template`, which transformers 5 no longer
writes (it would silently serve theta 10000, and fail every chat request).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from mtd_contract.config import LoraConfig
from mtd_trainer.atomic import atomic_dir
from mtd_trainer.checkpoints import save as save_checkpoint
from mtd_trainer.convert_gguf import REQUIRED_FILES, is_complete
from mtd_trainer.modeling import (
    attach_lora,
    engine_compatible_files,
    load_tokenizer,
    save_artifact,
    write_lora_adapter,
)
from mtd_trainer.progress import Progress


def unreadable_by_others(folder: Path) -> list[str]:
    """Every file without the other-read bit and every folder without other-exec (or read)."""
    bad = []
    for path in [folder, *folder.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode) and (mode & 0o005) != 0o005:
            bad.append(f"{path.relative_to(folder)}/ {oct(mode & 0o777)}")
        elif stat.S_ISREG(mode) and not mode & stat.S_IROTH:
            bad.append(f"{path.relative_to(folder)} {oct(mode & 0o777)}")
    return bad


def test_saved_adapters_models_and_checkpoints_are_readable_by_any_uid(
    tiny_model: Path, tmp_path: Path
) -> None:
    tokenizer = load_tokenizer(str(tiny_model))
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    full = save_artifact(base, tokenizer, tmp_path / "full")
    peft_model = attach_lora(base, LoraConfig(rank=4, alpha=8, dropout=0.0))
    padded = save_artifact(peft_model, tokenizer, tmp_path / "padded", [16])  # rewritten file
    factors = {"model.layers.0.self_attn.q_proj": (torch.randn(4, 32), torch.randn(32, 4))}
    written = write_lora_adapter(tmp_path / "written", factors, str(tiny_model))
    optimizer = torch.optim.SGD(peft_model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpoint = save_checkpoint(tmp_path / "ckpt", 1, peft_model, optimizer, scheduler, Progress())

    for folder in (full, padded, written, checkpoint):
        assert any(folder.glob("*.safetensors")), folder
        assert unreadable_by_others(folder) == [], folder


def test_atomic_dir_opens_nested_files_and_folders_but_not_through_symlinks(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "secret"
    outside.write_text("x")
    outside.chmod(0o600)
    with atomic_dir(tmp_path / "artifact") as tmp:
        (tmp / "sub").mkdir(mode=0o700)
        (tmp / "sub" / "weights.bin").write_bytes(b"w")
        (tmp / "sub" / "weights.bin").chmod(0o600)
        (tmp / "link").symlink_to(outside)
    artifact = tmp_path / "artifact"
    assert stat.S_IMODE((artifact / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE((artifact / "sub" / "weights.bin").stat().st_mode) == 0o644
    assert (artifact / "link").is_symlink()
    assert stat.S_IMODE(outside.stat().st_mode) == 0o600
    assert unreadable_by_others(artifact) == []


LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 128,
}


@pytest.mark.parametrize(
    "rope",
    [{"rope_type": "default", "rope_theta": 100000.0}, LLAMA3_ROPE],
    ids=["default", "llama3"],
)
def test_a_full_model_keeps_its_rope_and_chat_template_for_tgi(
    tiny_model: Path, tmp_path: Path, rope: dict
) -> None:
    config = AutoConfig.from_pretrained(tiny_model, rope_parameters=dict(rope))
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    tokenizer = load_tokenizer(str(tiny_model))
    target = save_artifact(model, tokenizer, tmp_path / "full")

    saved = json.loads((target / "config.json").read_text())
    assert saved["rope_theta"] == rope["rope_theta"]  # what TGI and older vLLM read
    assert saved["rope_parameters"] == rope  # what transformers 5 and vLLM read
    if rope["rope_type"] == "default":
        assert "rope_scaling" not in saved
    else:
        assert saved["rope_scaling"] == {k: v for k, v in rope.items() if k != "rope_theta"}
    reloaded = AutoConfig.from_pretrained(target)
    assert reloaded.rope_parameters == rope
    assert reloaded.to_diff_dict() | {"_name_or_path": ""} == model.config.to_diff_dict() | {
        "_name_or_path": ""
    }

    tokenizer_config = json.loads((target / "tokenizer_config.json").read_text())
    assert tokenizer.chat_template
    assert tokenizer_config["chat_template"] == tokenizer.chat_template  # what TGI reads
    assert (target / "chat_template.jinja").read_text() == tokenizer.chat_template
    assert AutoTokenizer.from_pretrained(target).chat_template == tokenizer.chat_template
    ids = torch.randint(3, 300, (1, 7))
    with torch.no_grad():
        torch.testing.assert_close(
            AutoModelForCausalLM.from_pretrained(target)(input_ids=ids).logits,
            model(input_ids=ids).logits,
        )


def test_several_chat_templates_are_written_as_tgis_named_list(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<e>"}))
    (tmp_path / "chat_template.jinja").write_text("default {{ messages }}")
    (tmp_path / "additional_chat_templates").mkdir()
    (tmp_path / "additional_chat_templates" / "tool_use.jinja").write_text("tools")
    engine_compatible_files(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["chat_template"] == [
        {"name": "default", "template": "default {{ messages }}"},
        {"name": "tool_use", "template": "tools"},
    ]
    assert json.loads((tmp_path / "config.json").read_text()) == {"model_type": "llama"}


def test_a_base_model_converted_without_the_tgi_keys_is_converted_again(
    tiny_model: Path, tmp_path: Path
) -> None:
    """`make` runs the conversion every time; an older conversion must not be kept."""
    folder = tmp_path / "converted"
    AutoModelForCausalLM.from_pretrained(tiny_model).save_pretrained(folder)
    load_tokenizer(str(tiny_model)).save_pretrained(folder)
    (folder / "conversion.json").write_text(json.dumps({"complete": True}))
    assert all((folder / name).is_file() for name in REQUIRED_FILES)
    assert not is_complete(folder)
    engine_compatible_files(folder)
    assert is_complete(folder)
    assert os.access(folder / "config.json", os.R_OK)
