"""The demo pipeline: every stage run through the same CLI a user would type.

Calling :func:`kbioxlm.cli.main` (not internal functions) keeps the demo honest: it exercises
exactly the documented command-line contract, and each step prints the command it ran so a user
can copy it.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import KbioxlmError
from .data import write_demo_data

TINY_ENCODER = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}


@dataclass
class DemoSettings:
    workdir: str = "runs/demo"
    model: str | None = None
    tokenizer: str | None = None
    pretrain_steps: int | None = None
    epochs: int | None = None
    seed: int = 13


def _cli(step: str, argv: list[str]) -> None:
    from ..cli import main

    print(f"\n== {step}\n$ kbioxlm {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = main(argv)
    if rc:
        raise KbioxlmError(f"demo step failed ({step}): kbioxlm {shlex.join(argv)} exited with {rc}")
    print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)


def train_demo_tokenizer(texts: list[str], out: Path, vocab_size: int = 4000) -> Path:
    """A SentencePiece-Unigram tokenizer (XLM-R's kind: ``▁`` word pieces, same special tokens)
    trained on the demo text, so the demo needs no download."""
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import XLMRobertaTokenizerFast

    spm = SentencePieceUnigramTokenizer()
    spm.train_from_iterator(
        texts, vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], unk_token="<unk>"
    )
    tok = XLMRobertaTokenizerFast(
        tokenizer_object=spm._tokenizer,
        bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    )
    tok.model_max_length = 512
    tok.save_pretrained(out)
    return out


def build_tiny_model(tokenizer_dir: Path, out: Path, seed: int) -> Path:
    """A randomly initialised 2-layer XLM-R-architecture encoder with an LM head (seeded)."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForMaskedLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = XLMRobertaConfig(
        vocab_size=len(tok), max_position_embeddings=514, type_vocab_size=1,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        **TINY_ENCODER,
    )
    torch.manual_seed(seed)
    XLMRobertaForMaskedLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _texts(paths: dict[str, Path]) -> list[str]:
    texts: list[str] = []
    for key, path in paths.items():
        if not path.suffix == ".jsonl" or key == "pairs":
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if "text" in rec:
                texts.append(rec["text"])
            elif "tokens" in rec:
                texts.append(("" if rec["lang"] == "zh" else " ").join(rec["tokens"]))
    names = paths["concepts"].read_text(encoding="utf-8").splitlines()[1:]
    texts.extend(line.split("\t")[3] for line in names)
    return texts


def run_demo(s: DemoSettings) -> dict[str, dict]:
    t_start = time.perf_counter()
    work = Path(s.workdir)
    data = write_demo_data(work / "data", seed=s.seed)
    print(f"demo data written to {work / 'data'} (concepts, relations, EN/ZH documents, article pairs, NER sets)")
    kb = work / "kb.sqlite"
    if kb.exists():
        kb.unlink()
    _cli("1/6 knowledge base", ["kb", "import", "tsv", "--concepts", str(data["concepts"]),
                                "--relations", str(data["relations"]), "--kb", str(kb)])
    _cli("1/6 knowledge base", ["kb", "stats", "--kb", str(kb)])

    corpus = work / "corpus"
    seed = str(s.seed)
    for level in ("entity", "fact"):
        for src, tgt in (("en", "zh"), ("zh", "en")):
            _cli(f"2/6 {level}-level corpus {src}→{tgt}", [
                "corpus", level, "--kb", str(kb), "--input", str(data[f"docs_{src}"]), "--lang", src,
                "--target-lang", tgt, "--out", str(corpus / f"{level}_{src}.jsonl"), "--seed", seed])
    _cli("2/6 passage-level corpus", ["corpus", "passage", "--pairs", str(data["pairs"]),
                                     "--out", str(corpus / "passage.jsonl"), "--seed", seed, "--max-chars", "160"])

    if s.model:
        base = s.model
        tokenizer = s.tokenizer or s.model
    else:
        print("\n== 3/6 tokenizer and tiny base model (built offline)", flush=True)
        tok_dir = train_demo_tokenizer(_texts(data), work / "tokenizer") if not s.tokenizer else Path(s.tokenizer)
        base = str(build_tiny_model(tok_dir, work / "base-model", s.seed))
        tokenizer = str(tok_dir)
        print(f"   tokenizer: {tok_dir}   base model: {base}")

    train_files = [corpus / f"{lvl}_{lang}.jsonl" for lvl in ("entity", "fact") for lang in ("en", "zh")]
    train_files += [corpus / "passage.jsonl", data["docs_en"], data["docs_zh"]]
    steps = s.pretrain_steps or (1000 if not s.model else 100)
    ckpt = work / "pretrain"
    _cli("4/6 knowledge-anchored continued pretraining", [
        "pretrain", "--config", str(_tiny_config(work)),
        f"model={base}", f"tokenizer={tokenizer}", "model_config=null",
        "train_files=" + ",".join(str(p) for p in train_files),
        f"output_dir={ckpt}", f"max_steps={steps}", f"seed={s.seed}",
        f"eval_steps={max(steps // 3, 1)}", f"save_steps={steps}",
    ])
    exported = work / "kbioxlm-model"
    _cli("5/6 export", ["export", "--checkpoint", str(ckpt / "final"), "--out", str(exported)])

    results: dict[str, dict] = {}
    epochs = str(s.epochs or (8 if not s.model else 3))
    for name, model in (("base", base), ("kbioxlm", str(exported))):
        out = work / "finetune" / name
        _cli(f"6/6 zero-shot NER EN→ZH with the {name} model", [
            "finetune", "--task", "ner", "--model", model, "--tokenizer", tokenizer,
            "--train", str(data["ner_train_en"]), "--dev", str(data["ner_dev_en"]),
            "--test", str(data["ner_test_zh"]), "--out", str(out), "--epochs", epochs, "--seed", str(s.seed),
            "--lr", "1e-3" if not s.model else "5e-5"])
        results[name] = json.loads((out / "results.json").read_text(encoding="utf-8"))

    table = _pretrain_table(ckpt / "eval.jsonl") + "\n\n" + _table(results)
    (work / "results.md").write_text(table + "\n", encoding="utf-8")
    print("\n" + table)
    print(f"\ndemo finished in {time.perf_counter() - t_start:.0f} s; everything is under {work}")
    return results


def _tiny_config(work: Path) -> Path:
    """The demo's pretraining config: the shipped tiny CPU settings, stored beside the run."""
    from importlib import resources

    text = resources.files("kbioxlm.resources").joinpath("pretrain-demo.yaml").read_text(encoding="utf-8")
    path = work / "pretrain-demo.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _pretrain_table(eval_log: Path) -> str:
    """Held-out accuracy before and after continued pretraining, per objective."""
    evals = [json.loads(line) for line in eval_log.read_text(encoding="utf-8").splitlines() if line.strip()]
    first, last = evals[0], evals[-1]
    rows = [
        f"| held-out accuracy (%) | step {first['step']} | step {last['step']} |",
        "|---|---|---|",
    ]
    for key, name in (("acc_mlm", "masked tokens, monolingual"), ("acc_entity", "masked entities"),
                      ("acc_fact", "masked relations (facts)"), ("pair_acc", "passage relation")):
        if key in first and key in last:
            rows.append(f"| {name} | {100 * first[key]:.1f} | {100 * last[key]:.1f} |")
    return "\n".join(rows)


def _table(results: dict[str, dict]) -> str:
    rows = [
        "| model | task | setting | F1 (%) | precision (%) | recall (%) | n_test |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        rows.append(
            f"| {name} | NER (Drug/ADE) | zero-shot EN→ZH | {r['f1']:.2f} | {r['precision']:.2f} | "
            f"{r['recall']:.2f} | {r['n_test']} |"
        )
    return "\n".join(rows)
