"""The command line's shared conventions: help on every flag, defaults shown, one language vocabulary,
hidden aliases for old spellings, ``--version`` and ``--print-config``."""

from __future__ import annotations

import argparse

import pytest
import yaml

from kbioxlm.cli import build_parser, main
from kbioxlm.cliutil import package_version
from kbioxlm.cliutil import HIDDEN, iter_parsers

PARSER = build_parser()
PARSERS = dict(iter_parsers(PARSER))
# Language flags may only be spelled like this (old spellings are hidden aliases).
LANG_FLAGS = {"--lang", "--target-lang", "--langs"}


def _visible(action: argparse.Action) -> list[str]:
    return [s for s in action.option_strings if s not in getattr(action, HIDDEN, ())]


def _leaves() -> list[str]:
    return [
        name for name, p in PARSERS.items() if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)
    ]


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{name} {'/'.join(a.option_strings) or a.dest}"
        for name, p in PARSERS.items()
        for a in p._actions
        if not isinstance(a, argparse._SubParsersAction) and a.help != argparse.SUPPRESS and not (a.help or "").strip()
    ]
    assert not missing, "options without help: " + "; ".join(missing)
    assert len(_leaves()) > 20  # the walk really reached the leaf commands


def test_language_flags_use_one_vocabulary() -> None:
    """No visible flag names a language any other way than --lang / --target-lang (/ --langs lists)."""
    odd = [
        f"{name} {s}"
        for name, p in PARSERS.items()
        for a in p._actions
        for s in _visible(a)
        if s.endswith(("-lang", "-lang-a", "-lang-b")) or s in ("--lang-a", "--lang-b")
        if s not in LANG_FLAGS
        and not s.startswith("--translation-lang")
        and s != "--fact-lang"
        and s != "--context-lang"
    ]
    assert not odd, odd


@pytest.mark.parametrize(
    "argv, dest, value",
    [
        (
            ["corpus", "passage", "--out", "o", "--lang-a", "es", "--lang-b", "en"],
            ("lang", "target_lang"),
            ("es", "en"),
        ),
        (
            ["corpus", "passage", "--out", "o", "--lang", "es", "--target-lang", "en"],
            ("lang", "target_lang"),
            ("es", "en"),
        ),
        (["probe", "--model", "m", "--kb", "k", "--out", "o", "--source-lang", "es"], ("lang",), ("es",)),
        (
            [
                "kb",
                "mine-pairs",
                "--source",
                "a",
                "--target",
                "b",
                "--source-lang",
                "en",
                "--target-lang",
                "zh",
                "--kb",
                "k",
            ],
            ("lang",),
            ("en",),
        ),
        (
            [
                "finetune",
                "--task",
                "ner",
                "--model",
                "m",
                "--train",
                "a",
                "--test",
                "b",
                "--out",
                "o",
                "--lr",
                "1e-3",
                "--threads",
                "3",
                "--patience",
                "0",
                "--train-lang",
                "en",
                "--test-lang",
                "zh",
            ],
            ("lr", "threads", "patience", "train_lang", "test_lang"),
            (1e-3, 3, 0, "en", "zh"),
        ),
        (
            [
                "finetune",
                "--task",
                "ner",
                "--model",
                "m",
                "--train",
                "a",
                "--test",
                "b",
                "--out",
                "o",
                "--learning-rate",
                "1e-3",
                "--num-threads",
                "3",
                "--early-stopping-patience",
                "0",
                "--lang",
                "en",
                "--target-lang",
                "zh",
            ],
            ("lr", "threads", "patience", "train_lang", "test_lang"),
            (1e-3, 3, 0, "en", "zh"),
        ),
        (
            [
                "corpus",
                "entity",
                "--kb",
                "k",
                "--input",
                "i",
                "--lang",
                "zh",
                "--target-lang",
                "en",
                "--out",
                "o",
                "--input-format",
                "cmeee",
            ],
            ("input_format",),
            ("json-list",),
        ),
        (
            [
                "corpus",
                "entity",
                "--kb",
                "k",
                "--input",
                "i",
                "--lang",
                "zh",
                "--target-lang",
                "en",
                "--out",
                "o",
                "--input-format",
                "dialogue",
            ],
            ("input_format",),
            ("blocks",),
        ),
    ],
)
def test_old_spellings_are_hidden_aliases(argv: list[str], dest: tuple[str, ...], value: tuple) -> None:
    args = PARSER.parse_args(argv)
    assert tuple(getattr(args, d) for d in dest) == value


def test_hidden_aliases_do_not_show_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["corpus", "passage"], ["finetune"], ["probe"], ["translate"]):
        with pytest.raises(SystemExit):
            PARSER.parse_args([*argv, "--help"])
        text = capsys.readouterr().out
        for old in ("--lang-a", "--source-lang", "--train-lang", "--lr ", "--threads", "--patience"):
            assert old not in text, (argv, old)
        assert "--lang" in text


def test_defaults_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        PARSER.parse_args(["corpus", "passage", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 512)" in text and "(default: en)" in text and "(default: zh)" in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out.split()
    assert out[0] == "kbioxlm" and out[1] == package_version() != "unknown"


def test_pretrain_help_lists_the_config_keys(capsys: pytest.CaptureFixture[str]) -> None:
    from kbioxlm.pretrain.trainer import DEFAULTS

    with pytest.raises(SystemExit):
        PARSER.parse_args(["pretrain", "--help"])
    text = capsys.readouterr().out
    missing = [k for k in DEFAULTS if k not in text]
    assert not missing, missing
    assert "--out" in text


def test_pretrain_print_config_merges_defaults_file_and_overrides(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "sub" / "p.yaml"
    cfg.parent.mkdir()
    cfg.write_text(
        "model_config: {model_type: bert}\ntokenizer: ./tok\ntrain_files: a.jsonl,b.jsonl#mlm\n"
        "output_dir: run\nmax_steps: 7\n",
        encoding="utf-8",
    )
    assert main(["pretrain", "--config", str(cfg), "--print-config", "learning_rate=0.5", "--out", "elsewhere"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["max_steps"] == 7 and printed["learning_rate"] == 0.5
    assert printed["weight_decay"] == 0.01  # a default neither the file nor the command line set
    # file paths are taken from the config's folder, command-line ones from the current directory
    assert printed["train_files"] == f"{cfg.parent}/a.jsonl,{cfg.parent}/b.jsonl#mlm"
    assert printed["tokenizer"] == str(cfg.parent / "tok")
    assert printed["output_dir"] == "elsewhere"


def test_finetune_print_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "finetune",
                "--task",
                "re",
                "--model",
                "m",
                "--train",
                "a",
                "--test",
                "b",
                "--out",
                "o",
                "--learning-rate",
                "0.25",
                "--print-config",
            ]
        )
        == 0
    )
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["lr"] == 0.25 and printed["task"] == "re" and printed["epochs"] == 4
