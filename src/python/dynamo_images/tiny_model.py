"""Write a tiny, weightless Llama-style model folder that Dynamo's mocker engine can serve.

Nothing may be downloaded from a model hub here, so smoke tests and the mocker get a model made
on the spot: a byte-level BPE tokenizer trained (in well under a second) on text that ships with
CPython, a small Llama config, and a chat template. The mocker needs no weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}</s>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]


def _training_text() -> list[str]:
    """Text that every CPython install has: the standard library's own sources."""
    import json as json_module
    import os

    sources = [Path(os.__file__), Path(json_module.__file__).with_name("decoder.py")]
    return [
        line
        for src in sources
        for line in src.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def write_tiny_model(out_dir: Path, vocab_size: int = 512, max_model_len: int = 2048) -> Path:
    """Create `out_dir` with config.json, tokenizer.json and tokenizer_config.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_text(), trainer=trainer)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    actual_vocab = tokenizer.get_vocab_size()

    token_id = tokenizer.token_to_id
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "num_hidden_layers": 2,
        "vocab_size": actual_vocab,
        "max_position_embeddings": max_model_len,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "torch_dtype": "bfloat16",
        "bos_token_id": token_id("<s>"),
        "eos_token_id": token_id("</s>"),
        "tie_word_embeddings": False,
    }
    tokenizer_config = {
        # transformers 5 needs the fast class named explicitly for a bare tokenizer.json.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": max_model_len,
        "chat_template": CHAT_TEMPLATE,
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dynamo-tiny-model", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to create")
    parser.add_argument("--vocab-size", type=int, default=512)
    args = parser.parse_args(argv)
    print(write_tiny_model(args.out_dir, vocab_size=args.vocab_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
