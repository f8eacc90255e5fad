"""``kbioxlm demo``: does knowledge anchoring beat plain MLM, from the same start and budget?

From one initialisation (a tiny random XLM-R-architecture encoder, or ``--model``) and the same
budget (steps, batch size, sequence length, seed) two arms are pretrained on the demo's synthetic
bilingual world (:mod:`.data`):

* ``mlm``: whole-word masked language modelling on the monolingual EN and ZH documents;
* ``kbioxlm``: knowledge anchoring on the same documents: MLM on them plus the entity level
  (code-switched KB names), the fact level (KB facts in the other language) and the passage level
  (aligned sentence pairs), in the paper's 1 : 1 mix of monolingual and knowledge records.

The untouched initialisation is the third row, ``base``. Each model is then measured on

* term retrieval accuracy@1 EN→ZH and ZH→EN (:func:`kbioxlm.probe.retrieval.run_probe`) over the
  diseases held out of every pretraining record: a held-out name can only find its translation if
  the model learnt a shared space from the concepts the KB anchors;
* zero-shot NER F1: fine-tuned on English, tested on Chinese (:func:`kbioxlm.tasks.finetune.run_finetune`),

once per seed (a full repeat: initialisation, both pretraining runs, probe and fine-tuning), and
reported as mean ± sample sd over the seeds: a table on stdout, ``results.json`` and
``results.png`` in the work folder. Every stage is a function call of the toolkit (KB import,
split, corpus builders, pretraining, export, probe, fine-tuning). Pretraining runs and evaluations
are independent jobs, run in parallel worker processes (one per core, at most
:data:`MAX_WORKERS`; one torch thread each for the tiny model, which is faster than one job on
several threads). The details of every stage go to ``<workdir>/demo.log``; stdout gets one line per
stage with its time.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import PreTrainedTokenizerFast

from ..corpus.build import run_levels
from ..corpus.knowledge import BuildOptions
from ..corpus.passage import run_passage
from ..errors import KbioxlmError
from ..hub import load_tokenizer
from ..io import write_json
from ..kb.split import split_concepts
from ..kb.tsv_import import import_tsv
from ..plotting import label_bars
from ..pretrain.trainer import load_pretrain_config, train
from ..probe.retrieval import run_probe
from ..progress import progress, quiet_transformers
from ..tasks.finetune import FinetuneConfig, run_finetune
from .data import build_world, demo_texts, write_demo_data, write_parallel

TINY_ENCODER: dict[str, Any] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
}
ARMS = ("base", "mlm", "kbioxlm")
ARM_LABELS = {
    "base": "base (the initialisation, no pretraining)",
    "mlm": "mlm (whole-word MLM, monolingual text)",
    "kbioxlm": "kbioxlm (MLM + entity + fact + passage)",
}
METRICS = ("term_retrieval_en_zh", "term_retrieval_zh_en", "ner_zero_shot_f1")
METRIC_LABELS = {
    "term_retrieval_en_zh": "held-out terms EN→ZH acc@1",
    "term_retrieval_zh_en": "held-out terms ZH→EN acc@1",
    "ner_zero_shot_f1": "NER F1 zero-shot EN→ZH",
}
HOLDOUT_FRACTION = 0.2
CJK_CHAR = r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]"
KB_MIX = {"mlm": 0.5, "entity": 1 / 6, "fact": 1 / 6, "passage": 1 / 6}
MAX_WORKERS = 4
TINY_DEFAULTS: dict[str, Any] = {"pretrain_steps": 1500, "epochs": 6, "ner_lr": 1e-3}
REAL_DEFAULTS: dict[str, Any] = {"pretrain_steps": 100, "epochs": 3, "ner_lr": 5e-5}


@dataclass
class DemoSettings:
    workdir: str = "runs/demo"
    model: str | None = None  # a real encoder (hub id or folder); None: a tiny random one
    tokenizer: str | None = None
    pretrain_steps: int | None = None  # per arm and seed
    epochs: int | None = None  # NER fine-tuning epochs
    seed: int = 13  # first seed; the others follow it
    seeds: int = 3
    batch_size: int | None = None  # pretraining batch (both arms)
    workers: int | None = None  # parallel jobs (default: one per core, at most MAX_WORKERS; 1 with --model)


# ---------------------------------------------------------------------------------- tokenizer, model
def train_demo_tokenizer(texts: list[str], out: Path, vocab_size: int = 4000) -> Path:
    """An XLM-R-kind tokenizer (SentencePiece Unigram, ``▁`` word starts, XLM-R's special tokens)
    whose pieces are the demo text's lower-cased English words and single characters.

    So English splits into words and Chinese into characters, like a multilingual tokenizer on
    biomedical terms (``gastric ulcer`` → ``▁gastric ▁ulcer``, ``胃溃疡`` → ``▁ 胃 溃 疡``): a name
    is made of the same pieces wherever its parts occur. Piece scores are log frequencies;
    ``vocab_size`` caps the number of pieces (the rarest words go first, characters always stay).
    Built, not trained: instant and identical on every run.
    """
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    words: collections.Counter[str] = collections.Counter()
    chars: collections.Counter[str] = collections.Counter()
    for text in texts:
        low = text.lower()
        chars.update(ch for ch in low if not ch.isspace())
        for w in low.split():
            w = w.strip(".,;:!?()[]\"'-")
            if w and w.isascii() and w.isalnum():
                words[w] += 1
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789.,;:!?()-'\"%/":  # any English text can be spelt
        chars[ch] += 0
    n_words = max(0, vocab_size - len(specials) - 1 - len(chars))
    kept = sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:n_words]
    total = sum(words.values()) + sum(chars.values()) + 1
    vocab = [(s, 0.0) for s in specials]
    vocab.append(("▁", math.log(max(1, sum(words.values())) / total)))
    vocab += [("▁" + w, math.log(c / total)) for w, c in kept]
    cjk = re.compile(CJK_CHAR)
    vocab += [("▁" + ch, math.log((c + 1) / total)) for ch, c in sorted(chars.items()) if cjk.fullmatch(ch)]
    vocab += [(ch, math.log((c + 1) / total) - 10.0) for ch, c in sorted(chars.items()) if not cjk.fullmatch(ch)]
    tok = Tokenizer(Unigram(vocab, unk_id=specials.index("<unk>"), byte_fallback=False))
    tok.normalizer = normalizers.Lowercase()
    # Every CJK character is a word of its own (``▁胃``), so a character is one piece wherever it stands.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(CJK_CHAR), behavior="isolated"),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    # The generic class keeps tokenizer.json as built (XLM-R's own class would replace the
    # lower-casing normaliser and the pre-tokenizer with its defaults).
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    )  # fmt: skip
    fast.model_max_length = 512
    fast.save_pretrained(out)
    return out


def build_tiny_model(tokenizer_dir: Path, out: Path, seed: int) -> Path:
    """A randomly initialised 2-layer XLM-R-architecture encoder with an LM head (seeded)."""
    # lazy: torch, in the job processes only (see run_demo)
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForMaskedLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = XLMRobertaConfig(
        vocab_size=len(tok), max_position_embeddings=514, type_vocab_size=1,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        **TINY_ENCODER,
    )  # fmt: skip
    torch.manual_seed(seed)
    with quiet_transformers():
        XLMRobertaForMaskedLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------- console and log
def _stage(name: str, secs: float, text: str, bar: Any = None) -> None:
    line = f"{name:<30}{secs:7.1f} s   {text}"
    if bar is not None:
        bar.write(line, file=sys.stdout)
    else:
        print(line, flush=True)
    sys.stdout.flush()


@contextlib.contextmanager
def _captured(log_path: Path) -> Iterator[None]:
    """Inside: ``kbioxlm`` log records (INFO and up) and stdout prints go to the log file, the
    toolkit's warnings and errors still reach stderr, and transformers is quiet."""
    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(open(log_path, "a", encoding="utf-8", buffering=1))
        stack.enter_context(contextlib.redirect_stdout(fh))
        stack.enter_context(quiet_transformers())
        handlers = _log_handlers(fh)
        pkg = logging.getLogger("kbioxlm")
        saved = (pkg.level, pkg.propagate)
        for h in handlers:
            pkg.addHandler(h)
        pkg.setLevel(logging.INFO)
        pkg.propagate = False
        try:
            yield
        finally:
            for h in handlers:
                pkg.removeHandler(h)
            pkg.setLevel(saved[0])
            pkg.propagate = saved[1]


def _log_handlers(fh: Any) -> list[logging.Handler]:
    to_file = logging.StreamHandler(fh)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    to_err = logging.StreamHandler(sys.stderr)
    to_err.setLevel(logging.WARNING)
    to_err.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    return [to_file, to_err]


def _init_worker(log_path: str, threads: int | None) -> None:
    """A job process: its log records, warnings and prints go to the demo log (the toolkit's
    warnings also to stderr), transformers is quiet, and progress is the parent's to report."""
    os.environ["KBIOXLM_PROGRESS"] = "off"
    fh = open(log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives as long as the process
    sys.stdout = fh
    pkg = logging.getLogger("kbioxlm")
    for h in _log_handlers(fh):
        pkg.addHandler(h)
    pkg.setLevel(logging.INFO)
    pkg.propagate = False
    logging.captureWarnings(True)
    warn_log = logging.getLogger("py.warnings")
    warn_log.addHandler(_log_handlers(fh)[0])
    warn_log.propagate = False
    # lazy: torch, in the job processes only (see run_demo)
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------- jobs
def _warm_job() -> None:
    """Nothing: submitted once per worker at the start, so the workers import torch while the
    parent writes the data and builds the corpora."""


def _init_job(job: dict[str, Any]) -> dict[str, Any]:
    """The seed's tiny random initialisation (the ``base`` row and both arms' start)."""
    t = time.perf_counter()
    shutil.rmtree(job["out"], ignore_errors=True)
    path = build_tiny_model(Path(job["tokenizer"]), Path(job["out"]), job["seed"])
    return {"model": str(path), "seconds": round(time.perf_counter() - t, 1)}


def _pretrain_job(job: dict[str, Any]) -> dict[str, Any]:
    """Pretrain one arm from the seed's initialisation and export it as a Hugging Face model."""
    from ..pretrain.export import export_checkpoint  # lazy: torch, in the job processes only (see run_demo)

    t = time.perf_counter()
    ckpt = Path(job["out"]) / "pretrain"
    with resources.as_file(resources.files("kbioxlm.resources").joinpath("pretrain-demo.yaml")) as path:
        cfg = load_pretrain_config(path, job["overrides"] + [f"output_dir={ckpt}"])
    train(cfg)
    exported = Path(job["out"]) / "model"
    export_checkpoint(ckpt / "final", exported, tokenizer=cfg.tokenizer, overwrite=True)
    meta = json.loads((ckpt / "final" / "kbioxlm_model.json").read_text(encoding="utf-8"))
    log_lines = (ckpt / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    last = json.loads(log_lines[-1]) if log_lines else {}
    return {
        "model": str(exported),
        "seconds": round(time.perf_counter() - t, 1),
        "steps": cfg.max_steps,
        "batch_size": cfg.per_device_train_batch_size,
        "final_loss": last.get("loss"),
        "final_losses": {k[5:]: v for k, v in last.items() if k.startswith("loss_")},
        "head_from_checkpoint": meta.get("head_from_checkpoint"),
    }


def _eval_job(job: dict[str, Any]) -> dict[str, Any]:
    """Held-out term retrieval both ways and zero-shot EN→ZH NER of one model."""
    t = time.perf_counter()
    out = Path(job["out"])
    probe = run_probe(job["model"], job["kb"], "en", "zh", out_dir=out / "probe", concepts=job["heldout"],
                      seed=job["seed"], tokenizer=job["tokenizer"], num_threads=job["threads"])  # fmt: skip
    data = Path(job["data"])
    ner = run_finetune(FinetuneConfig(
        task="ner", model=job["model"], tokenizer=job["tokenizer"], train=str(data / "ner_train_en.jsonl"),
        dev=str(data / "ner_dev_en.jsonl"), test=str(data / "ner_test_zh.jsonl"), out=str(out / "ner"),
        epochs=job["epochs"], lr=job["lr"], batch_size=16, max_length=64, seed=job["seed"],
        num_threads=job["threads"], progress=False,
    ))  # fmt: skip
    terms = probe["term_retrieval"]
    return {
        "term_retrieval_en_zh": terms["en_zh"]["acc1"],
        "term_retrieval_zh_en": terms["zh_en"]["acc1"],
        "term_retrieval_mrr": {"en_zh": terms["en_zh"]["mrr"], "zh_en": terms["zh_en"]["mrr"]},
        "term_retrieval_best_layer": terms["best_layer"],
        "n_terms": terms["n"],
        "ner_zero_shot_f1": ner["f1"],
        "ner_precision": ner["precision"],
        "ner_recall": ner["recall"],
        "ner_dev_f1_en": ner["dev_f1"],
        "ner_best_epoch": ner["best_epoch"],
        "eval_seconds": round(time.perf_counter() - t, 1),
    }


# ---------------------------------------------------------------------------------- the demo
def run_demo(s: DemoSettings) -> dict[str, Any]:
    """Run the comparison; returns the ``results.json`` document."""
    if s.seeds < 1:
        raise KbioxlmError(f"--seeds must be at least 1, got {s.seeds}")
    for name in ("pretrain_steps", "epochs", "batch_size", "workers"):
        value = getattr(s, name)
        if value is not None and value < 1:
            raise KbioxlmError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    t_start = time.perf_counter()
    work = Path(s.workdir)
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "demo.log"
    log_path.write_text("", encoding="utf-8")
    real = s.model is not None
    defaults = REAL_DEFAULTS if real else TINY_DEFAULTS
    steps = s.pretrain_steps or defaults["pretrain_steps"]
    epochs = s.epochs or defaults["epochs"]
    seeds = [s.seed + i for i in range(s.seeds)]
    workers = s.workers or (1 if real else max(1, min(MAX_WORKERS, os.cpu_count() or 1)))
    threads = None if real else 1
    # Workers start (and import torch) while this process writes the data and builds the corpora.
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_init_worker, initargs=(str(log_path), threads))  # fmt: skip
    try:
        for _ in range(workers):
            pool.submit(_warm_job)
        return _run(s, pool, work, log_path, real, steps, epochs, seeds, workers, threads, t_start)
    except BaseException:  # an error or Ctrl-C: stop the running jobs too, not only the queued ones
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run(
    s: DemoSettings,
    pool: cf.ProcessPoolExecutor,
    work: Path,
    log_path: Path,
    real: bool,
    steps: int,
    epochs: int,
    seeds: list[int],
    workers: int,
    threads: int | None,
    t_start: float,
) -> dict[str, Any]:
    defaults = REAL_DEFAULTS if real else TINY_DEFAULTS
    for seed in seeds:  # a fresh run: nothing of an earlier one is read back
        shutil.rmtree(work / f"seed-{seed}", ignore_errors=True)
    print(f"kbioxlm demo: plain MLM vs knowledge anchoring from the same start "
          f"({s.model or 'a tiny random encoder'}) and budget ({steps} steps per arm), {len(seeds)} seed(s), "
          f"{workers} parallel job(s); synthetic data; details in {log_path}", flush=True)  # fmt: skip

    # 1. data and knowledge base -------------------------------------------------------------
    t = time.perf_counter()
    with _captured(log_path):
        data = write_demo_data(work / "data", seed=s.seed)
        kb = work / "kb.sqlite"
        kb.unlink(missing_ok=True)
        counts = import_tsv(kb, concepts=data["concepts"], relations=data["relations"],
                            relation_names=data["relation_names"])  # fmt: skip
        split_file = work / "kb_split.txt"
        split = split_concepts(kb, HOLDOUT_FRACTION, s.seed, ["en", "zh"], split_file)
        world = build_world()
        # The diseases among the drawn concepts are held out: each is a new composition of an
        # organ and a pathology that other diseases anchor. (A held-out drug's name has no parts
        # another concept shares: no model could find its translation; it stays in training.)
        drawn = [c for c in split_file.read_text(encoding="utf-8").split() if c]
        held = [c for c in drawn if world.concepts[c].parts is not None]
        heldout = work / "heldout.txt"
        heldout.write_text("".join(c + "\n" for c in held), encoding="utf-8")
        data = write_demo_data(work / "data", seed=s.seed, held_out=held)  # article pairs without them
        par_en, par_zh, n_par, n_dropped = write_parallel(work / "data", held)
    n_dis = sum(c.parts is not None for c in world.concepts.values())
    _stage("data + KB", time.perf_counter() - t,
           f"{n_dis} diseases (12 organs × 12 pathologies) + {len(world.concepts) - n_dis} drugs with EN/ZH names, "
           f"{counts['relations']} relations; held out of all pretraining: the {len(held)} diseases among the "
           f"{split['held_out']} concepts `kb split` drew → {heldout}")  # fmt: skip

    # 2. corpora -----------------------------------------------------------------------------
    t = time.perf_counter()
    corpus = work / "corpus"
    with _captured(log_path):
        summaries = {}
        for src, tgt in (("en", "zh"), ("zh", "en")):
            opts = BuildOptions(
                kb=str(kb), lang=src, target_lang=tgt, seed=s.seed, exclude_concepts=tuple(sorted(held))
            )
            summaries[src] = run_levels(
                opts,
                str(data[f"docs_{src}"]),
                {"entity": str(corpus / f"entity_{src}.jsonl"), "fact": str(corpus / f"fact_{src}.jsonl")},
                progress=False,
            )
        # context_lang="cross": every pair is EN-ZH, so no label can be read off the scripts
        passage = run_passage(str(corpus / "passage.jsonl"), parallel=(str(par_en), str(par_zh)), lang_a="en",
                              lang_b="zh", seed=s.seed, max_chars=160, passages_per_article=3, progress=False,
                              context_lang="cross")  # fmt: skip
    n_docs = sum(sm["entity"]["documents"] for sm in summaries.values())
    switches = {d: n for sm in summaries.values() for d, n in sm["entity"].get("switches", {}).items()}
    _stage("corpora", time.perf_counter() - t,
           f"{n_docs} EN/ZH documents; entity level {sum(sm['entity']['records'] for sm in summaries.values())} "
           f"records ({', '.join(f'{d} {n}' for d, n in sorted(switches.items()))} names switched), fact level "
           f"{sum(sm['fact']['records'] for sm in summaries.values())}, passage level {passage['records']} pairs from "
           f"{n_par} aligned sentences ({n_dropped} naming a held-out disease left out)")  # fmt: skip
    mono = [str(data["docs_en"]), str(data["docs_zh"])]
    entity = [str(corpus / f"entity_{lang}.jsonl") for lang in ("en", "zh")]
    arm_files = {
        "mlm": mono,
        # The code-switched entity records serve both maskings the toolkit has for them: the entity
        # task (whole entities) and, as `path#mlm`, text with words and entities masked 1:1 (paper
        # A.1; the pipeline's `entity_mono`), where the words around a switched name are predicted
        # from it as they are from its translation in the monolingual text.
        "kbioxlm": mono
        + entity
        + [f"{p}#mlm" for p in entity]
        + [str(corpus / f"fact_{lang}.jsonl") for lang in ("en", "zh")]
        + [str(corpus / "passage.jsonl")],
    }

    # 3. tokenizer -----------------------------------------------------------------------------
    t = time.perf_counter()
    with _captured(log_path):
        if real:
            assert s.model is not None  # `real`: a model was given
            tokenizer = s.tokenizer or s.model
            what = f"the model's own ({tokenizer})"
        elif s.tokenizer:
            tokenizer, what = s.tokenizer, f"given ({s.tokenizer})"
        else:
            tokenizer = str(train_demo_tokenizer(demo_texts(data), work / "tokenizer"))
            what = "the demo's English words and single Chinese characters"
        n_pieces = len(load_tokenizer(tokenizer))
    _stage("tokenizer", time.perf_counter() - t, f"{n_pieces} pieces: {what}")
    print(_fresh_note(real), flush=True)

    # 4. jobs: pretraining (2 arms × seeds), then probe + NER of every model ----------------------
    per_seed: dict[int, dict[str, Any]] = {seed: {"seed": seed, "arms": {}} for seed in seeds}
    common = {"kb": str(kb), "heldout": str(heldout), "tokenizer": tokenizer, "data": str(work / "data"),
              "epochs": epochs, "lr": defaults["ner_lr"], "threads": threads}  # fmt: skip

    def eval_job(seed: int, arm: str, model: str) -> dict[str, Any]:
        return {**common, "model": model, "seed": seed, "out": str(work / f"seed-{seed}" / arm)}

    pending: dict[cf.Future, tuple[str, int, str]] = {}

    def start(seed: int, base: str) -> None:
        """Both arms of a seed from its initialisation (the long jobs first), and the base's evaluation."""
        for arm in ("mlm", "kbioxlm"):
            job = {
                "out": str(work / f"seed-{seed}" / arm),
                "overrides": _pretrain_overrides(s, base, tokenizer, arm_files[arm], steps, seed, arm),
            }
            pending[pool.submit(_pretrain_job, job)] = ("pretrain", seed, arm)
        pending[pool.submit(_eval_job, eval_job(seed, "base", base))] = ("eval", seed, "base")

    # The bar counts pretraining steps of all runs, read from their train_log.jsonl while they run.
    bar = progress(total=len(seeds) * 2 * steps, desc="pretraining (all runs)", unit="step")
    done_steps: dict[tuple[int, str], int] = {}

    def advance() -> None:
        if bar.n >= bar.total:
            return  # closed: the evaluations that remain report one line each
        for seed in seeds:
            for arm in ("mlm", "kbioxlm"):
                if done_steps.get((seed, arm)) != steps:
                    done_steps[(seed, arm)] = _logged_step(work / f"seed-{seed}" / arm / "pretrain" / "train_log.jsonl")
        bar.update(sum(done_steps.values()) - bar.n)
        if bar.n >= bar.total:
            bar.close()

    try:
        for seed in seeds:
            if real:
                start(seed, str(s.model))
            else:
                job = {"tokenizer": tokenizer, "out": str(work / f"seed-{seed}" / "base"), "seed": seed}
                pending[pool.submit(_init_job, job)] = ("init", seed, "base")
        while pending:
            done, _ = cf.wait(pending, timeout=2.0, return_when=cf.FIRST_COMPLETED)
            advance()
            for fut in done:
                kind, seed, arm = pending.pop(fut)
                res = fut.result()
                rec = per_seed[seed]["arms"].setdefault(arm, {})
                tag = f"seed {seed} {arm}"
                if kind == "init":
                    start(seed, res["model"])
                    _stage(
                        f"seed {seed}: initialisation",
                        res["seconds"],
                        f"random, 2 layers × 64, XLM-R architecture → {res['model']}",
                        bar,
                    )
                elif kind == "pretrain":
                    rec["pretrain"] = res
                    done_steps[(seed, arm)] = steps
                    pending[pool.submit(_eval_job, eval_job(seed, arm, res["model"]))] = ("eval", seed, arm)
                    loss = (
                        f", final loss {res['final_loss']:.2f}" if isinstance(res["final_loss"], (int, float)) else ""
                    )
                    fresh = ("; MLM head dense/LayerNorm started fresh (the checkpoint has no MLM head)"
                             if res["head_from_checkpoint"] is False else "")  # fmt: skip
                    _stage(
                        f"{tag}: pretrain",
                        res["seconds"],
                        f"{res['steps']} steps × {res['batch_size']} records{loss}{fresh}",
                        bar,
                    )
                else:
                    rec.update(res)
                    _stage(f"{tag}: probe + NER", res["eval_seconds"],
                           f"held-out terms EN→ZH {res['term_retrieval_en_zh']:.1f}%, ZH→EN {res['term_retrieval_zh_en']:.1f}%; "
                           f"NER zero-shot F1 {res['ner_zero_shot_f1']:.1f}", bar)  # fmt: skip
    finally:
        bar.close()

    # 5. results ------------------------------------------------------------------------------
    runs = [per_seed[seed] for seed in seeds]
    results = {"arms": _aggregate(runs), "seconds": round(time.perf_counter() - t_start, 1)}
    write_json(work / "results.json", results)
    write_json(work / "runs.json", {
        "settings": {"model": s.model, "tokenizer": tokenizer, "pretrain_steps": steps, "ner_epochs": epochs,
                     "seeds": seeds, "workers": workers, "heldout": str(heldout), "n_heldout": len(held)},
        "seeds": runs,
    })  # fmt: skip
    table = format_table(results, len(held), len(seeds))
    (work / "results.md").write_text(table + "\n", encoding="utf-8")
    _plot(results, work / "results.png", len(seeds), len(held))
    print("\n" + table + "\n", flush=True)
    print(f"demo finished in {results['seconds']:.0f} s → {work / 'results.json'}, {work / 'results.png'}. "
          "Synthetic data: this shows the mechanism, it is not a result (real data: docs/results-small-cpu.md).",
          flush=True)  # fmt: skip
    return results


def _logged_step(path: Path) -> int:
    """The last step a running pretraining wrote to its train_log.jsonl (0 before the first line)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 4096))
            lines = fh.read().splitlines()
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (OSError, ValueError, KeyError, IndexError):
        return 0


def _fresh_note(real: bool) -> str:
    """The one line that replaces transformers' load reports."""
    head = ("the MLM head comes with the checkpoint when it has one (else its dense/LayerNorm start fresh: "
            "see demo.log); " if real else "the MLM head comes with the random initialisation; ")  # fmt: skip
    return (
        "model: " + head + "the passage-pair head starts fresh for pretraining and the NER tag classifier + CRF "
        "for fine-tuning (no checkpoint has them); the probe and NER leave the MLM head (lm_head.*) and the "
        "pooler unused (transformers' load reports about these are silenced)"
    )


def _pretrain_overrides(
    s: DemoSettings, base: str, tokenizer: str, files: list[str], steps: int, seed: int, arm: str
) -> list[str]:
    """``key=value`` settings over ``resources/pretrain-demo.yaml``: the arms differ in data and mix only."""
    overrides = [
        f"model={base}",
        f"tokenizer={tokenizer}",
        f"max_steps={steps}",
        f"seed={seed}",
        "train_files=" + ",".join(files),
        "mix=" + json.dumps({"mlm": 1.0} if arm == "mlm" else KB_MIX),
        "overwrite_output_dir=true",
    ]
    if s.model:  # a pretrained encoder: continued pretraining, not learning from scratch
        overrides += ["learning_rate=5e-5", "warmup_steps=10", "head_learning_rate=5e-4", "logging_steps=5"]
    else:
        overrides.append("num_threads=1")
    if s.batch_size:
        overrides.append(f"per_device_train_batch_size={s.batch_size}")
    return overrides


# ---------------------------------------------------------------------------------- aggregation
def mean_sd(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (0 for one value) of ``values``, rounded to 0.01."""
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": round(m, 2), "sd": round(sd, 2), "values": [round(v, 2) for v in values]}


def _aggregate(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    return {arm: {m: mean_sd([float(r["arms"][arm][m]) for r in per_seed]) for m in METRICS} for arm in ARMS}


def format_table(results: dict[str, Any], n_heldout: int, n_seeds: int) -> str:
    head = (
        f"| model ({n_seeds} seed{'s' if n_seeds > 1 else ''}, mean ± sd, %) | "
        + " | ".join(METRIC_LABELS[m] for m in METRICS)
        + " |"
    )
    rows = [head, "|" + "---|" * (len(METRICS) + 1)]
    for arm in ARMS:
        cells = [f"{results['arms'][arm][m]['mean']:.1f} ± {results['arms'][arm][m]['sd']:.1f}" for m in METRICS]
        rows.append(f"| {ARM_LABELS[arm]} | " + " | ".join(cells) + " |")
    chance = 100.0 / n_heldout if n_heldout else float("nan")
    rows.append("")
    rows.append(f"Term retrieval: the name of each of the {n_heldout} held-out diseases, embedded alone (mean of the last "
                f"layer), must find its translation among all {n_heldout} (chance {chance:.1f}%); no pretraining record "
                "links them to their translations. NER: Drug/ADE tagger fine-tuned on English, F1 on Chinese.")  # fmt: skip
    return "\n".join(rows)


def _plot(results: dict[str, Any], path: Path, n_seeds: int, n_heldout: int) -> None:
    """Grouped bars (one group per measure, one bar per arm), each labelled with its mean; ± sd error bars
    only with two or more seeds; a 0.0 mean stays visible as an outlined bar on the zero line."""
    # lazy: matplotlib, only for the chart
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.26
    colours = {"base": "#9e9e9e", "mlm": "#4c78a8", "kbioxlm": "#f58518"}
    for k, arm in enumerate(ARMS):
        xs = [j + (k - 1) * width for j in range(len(METRICS))]
        means = [results["arms"][arm][m]["mean"] for m in METRICS]
        sds = [results["arms"][arm][m]["sd"] for m in METRICS]
        bars = ax.bar(
            xs,
            means,
            width,
            yerr=sds if n_seeds >= 2 else None,
            capsize=4,
            label=arm,
            color=colours[arm],
            edgecolor="black",
            linewidth=0.6,
        )
        label_bars(ax, bars, [f"{v:.1f}" for v in means])
    if n_heldout:
        ax.hlines(
            100.0 / n_heldout, -0.45, 1.45, colors="black", linestyles="dotted", linewidth=1, label="chance (retrieval)"
        )
    ax.set_xticks(range(len(METRICS)))
    ax.set_xticklabels(
        [
            METRIC_LABELS[m]
            .replace(" acc@1", "\nacc@1")
            .replace(" zero-shot", "\nzero-shot")
            .replace("EN→ZH", "en→zh")
            .replace("ZH→EN", "zh→en")
            for m in METRICS
        ]
    )  # the run's codes
    ax.set_ylabel("%")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylim(bottom=-3.0)
    ax.set_title(
        f"kbioxlm demo (synthetic data): mean{' ± sd' if n_seeds >= 2 else ''} over {n_seeds} "
        f"seed{'s' if n_seeds > 1 else ''}"
    )
    ax.legend(frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    tmp.replace(path)
