import json
from pathlib import Path

from tokenizers import Tokenizer

from dynamo_images.tiny_model import main, write_tiny_model


def test_model_folder_is_complete_and_consistent(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "m", vocab_size=400)
    assert sorted(p.name for p in model.iterdir()) == [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    config = json.loads((model / "config.json").read_text())
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    assert config["vocab_size"] == tokenizer.get_vocab_size() <= 400
    assert config["eos_token_id"] == tokenizer.token_to_id("</s>")
    tokenizer_config = json.loads((model / "tokenizer_config.json").read_text())
    assert "add_generation_prompt" in tokenizer_config["chat_template"]


def test_tokenizer_round_trips_text(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "m")
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    text = "Hello from Dynamo, naïve café!"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_cli_writes_the_folder(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "tokenizer.json").exists()
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")
