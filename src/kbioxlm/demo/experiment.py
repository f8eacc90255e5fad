"""``kbioxlm demo``: does knowledge anchoring beat plain MLM, from the same start and budget?

From one initialisation (a tiny random XLM-R-architecture encoder, or ``--model``) and the same
budget (steps, batch size, sequence length, seed) two arms are pretrained on the demo's synthetic
bilingual world (:mod:`.data`):

* ``mlm``: whole-word masked language modelling on the monolingual EN and ZH documents;
* ``kbioxlm``: knowledge anchoring on the same documents: MLM on them plus the entity level
  (code-switched KB names), the fact level (KB facts in the other language) and the passage level
  (aligned sentence pairs), in the paper's 1 : 1 mix of monolingual and knowledge records.

The untouched initialisation is the third row, ``base``. Each model is then measured on

* term retrieval accuracy@1 EN→ZH and ZH→EN (``kbioxlm probe``) over the diseases held out of
  every pretraining record: a held-out name can only find its translation if the model learnt a
  shared space from the concepts the KB anchors;
* zero-shot NER F1: fine-tuned on English, tested on Chinese (``kbioxlm benchmark``),

once per seed (a full repeat: initialisation, KB, corpora, both pretraining runs, probe and
fine-tuning), and reported as mean ± sample sd over the seeds: a table on stdout, ``results.json``
and ``results.png`` in the work folder.

The demo is a pipeline config (``resources/demo/pipeline.yaml``), repeated once per seed by the
pipeline's own repeat runner (:func:`kbioxlm.pipeline.repeats.run_repeats`, ``kbioxlm pipeline
--seeds``): this module only writes the pipeline's inputs (the synthetic world, a tokenizer for it,
each seed's random initialisation) and the config with the command's settings filled in, and
aggregates what the runs' probe and benchmark steps wrote. The seeds run side by side (at most
:data:`MAX_WORKERS`; one torch thread each for the tiny model, which is faster than one run on
several threads). The details of every step go to ``<workdir>/demo.log``; stdout gets one line per
finished step of a second or more.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import PreTrainedTokenizerFast

from ..errors import KbioxlmError
from ..hub import load_tokenizer
from ..io import atomic_write, write_json
from ..paths import resolve_model
from ..pipeline.repeats import log_handlers, run_repeats
from ..plotting import label_bars
from ..progress import progress, quiet_transformers
from .data import build_world, demo_texts, draw_held_out, write_demo_data, write_parallel

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
CJK_CHAR = r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]"
MAX_WORKERS = 4
MIN_STEP_SECONDS = 1.0  # a finished pipeline step gets a console line when it took this long
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
    workers: int | None = None  # seeds side by side (default: one per seed, at most MAX_WORKERS; 1 with --model)


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
        handlers = log_handlers(fh)
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


# ---------------------------------------------------------------------------------- the pipeline
def write_pipeline_config(s: DemoSettings, work: Path, steps: int, epochs: int, lr: float, real: bool) -> Path:
    """``WORKDIR/pipeline.yaml`` (with ``ner-benchmark.yaml`` and ``pretrain.yaml`` beside it): the
    shipped demo pipeline (``resources/demo``) with this run's settings filled in.

    What the demo runs is this file, so a user can run, inspect or resume any seed of it by hand
    (``kbioxlm pipeline --config WORKDIR/pipeline.yaml --seed S --out WORKDIR/seed-S``).
    """
    shipped = resources.files("kbioxlm.resources.demo")
    cfg = yaml.safe_load(shipped.joinpath("pipeline.yaml").read_text(encoding="utf-8"))
    bench = yaml.safe_load(shipped.joinpath("ner-benchmark.yaml").read_text(encoding="utf-8"))
    # Paths typed on the command line are from the current directory; the written config's own
    # relative paths are from its folder (the work folder), so the given ones are made absolute.
    model, tokenizer = (resolve_model(v, Path.cwd()) if v else None for v in (s.model, s.tokenizer))
    over: dict[str, Any] = {"max_steps": steps}
    if s.batch_size:
        over["per_device_train_batch_size"] = s.batch_size
    if real:  # a pretrained encoder: continued pretraining, not learning from scratch
        cfg["base_model"] = {"name": "base", "path": model, "tokenizer": tokenizer or model}
        over |= {"learning_rate": 5e-5, "warmup_steps": 10, "head_learning_rate": 5e-4, "logging_steps": 5}
    else:  # one torch thread per job: the seeds run side by side
        over["num_threads"] = 1
        cfg["probe"]["args"] = ["--num-threads", "1"]
        bench["finetune"]["num_threads"] = 1
        if tokenizer:
            cfg["base_model"]["tokenizer"] = tokenizer
    for stage in cfg["pretrain"]:
        stage["overrides"] = {**stage["overrides"], **over}
    bench["finetune"] |= {"epochs": epochs, "lr": lr}
    head = "# Written by `kbioxlm demo` from src/kbioxlm/resources/demo/{}; relative paths are from this folder.\n"
    for name, data in (("pipeline.yaml", cfg), ("ner-benchmark.yaml", bench)):
        with atomic_write(work / name) as fh:
            fh.write(head.format(name) + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    with atomic_write(work / "pretrain.yaml") as fh:
        fh.write(shipped.joinpath("pretrain.yaml").read_text(encoding="utf-8"))
    return work / "pipeline.yaml"


def read_seed_results(out: Path) -> dict[str, dict[str, Any]]:
    """Per arm, the measures of one seed's pipeline run in ``out``: held-out term retrieval both ways
    (``probe/<arm>/probe.json``) and zero-shot NER (``benchmark/<arm>/results.jsonl``)."""
    arms: dict[str, dict[str, Any]] = {}
    for arm in ARMS:
        terms = json.loads((out / "probe" / arm / "probe.json").read_text(encoding="utf-8"))["term_retrieval"]
        lines = (out / "benchmark" / arm / "results.jsonl").read_text(encoding="utf-8").splitlines()
        ner = json.loads(lines[-1])
        arms[arm] = {
            "term_retrieval_en_zh": terms["en_zh"]["acc1"],
            "term_retrieval_zh_en": terms["zh_en"]["acc1"],
            "term_retrieval_mrr": {"en_zh": terms["en_zh"]["mrr"], "zh_en": terms["zh_en"]["mrr"]},
            "n_terms": terms["n"],
            "ner_zero_shot_f1": ner["f1"],
            "ner_precision": ner["precision"],
            "ner_recall": ner["recall"],
        }
    return arms


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
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KbioxlmError(f"{work}: cannot create the work folder ({exc.strerror})") from None
    log_path = work / "demo.log"
    log_path.write_text("", encoding="utf-8")
    real = s.model is not None
    defaults = REAL_DEFAULTS if real else TINY_DEFAULTS
    steps = s.pretrain_steps or defaults["pretrain_steps"]
    epochs = s.epochs or defaults["epochs"]
    seeds = [s.seed + i for i in range(s.seeds)]
    workers = s.workers or (1 if real else max(1, min(MAX_WORKERS, len(seeds))))
    threads = None if real else 1
    print(f"kbioxlm demo: plain MLM vs knowledge anchoring from the same start "
          f"({s.model or 'a tiny random encoder'}) and budget ({steps} steps per arm), {len(seeds)} seed(s), "
          f"{workers} in parallel; synthetic data; details in {log_path}", flush=True)  # fmt: skip

    # 1. the demo's inputs: data, tokenizer, the pipeline config ---------------------------------
    t = time.perf_counter()
    with _captured(log_path):
        world = build_world()
        held = draw_held_out(world, s.seed)
        data = write_demo_data(work / "data", seed=s.seed, held_out=held)  # article pairs without them
        _par_en, _par_zh, n_par, n_dropped = write_parallel(work / "data", held)
        if real:
            tokenizer = s.tokenizer or str(s.model)
            what = f"the model's own ({tokenizer})"
        elif s.tokenizer:
            tokenizer, what = s.tokenizer, f"given ({s.tokenizer})"
        else:
            tokenizer = str(train_demo_tokenizer(demo_texts(data), work / "tokenizer"))
            what = "the demo's English words and single Chinese characters"
        n_pieces = len(load_tokenizer(tokenizer))
        config = write_pipeline_config(s, work, steps, epochs, defaults["ner_lr"], real)
    n_dis = sum(c.parts is not None for c in world.concepts.values())
    _stage("data + pipeline config", time.perf_counter() - t,
           f"{n_dis} diseases (12 organs × 12 pathologies) + {len(world.concepts) - n_dis} drugs with EN/ZH names; "
           f"{len(held)} diseases held out of all pretraining ({data['heldout']}; {n_par} aligned sentences kept, "
           f"{n_dropped} naming one left out); tokenizer: {n_pieces} pieces, {what}; → {config}")  # fmt: skip
    print(_fresh_note(real), flush=True)
    print(f"the runs: kbioxlm pipeline --config {config} --seeds {','.join(map(str, seeds))} --jobs {workers} "
          f"(seed S into {work}/seed-S; finished steps are skipped when the demo runs again; steps under "
          f"{MIN_STEP_SECONDS:.0f} s are in the log only)", flush=True)  # fmt: skip

    # 2. each seed's initialisation, then one pipeline run per seed, side by side ---------------
    if not real:
        t = time.perf_counter()
        with _captured(log_path):
            for seed in seeds:
                build_tiny_model(Path(tokenizer), work / "init" / f"seed-{seed}", seed)
        _stage("initialisations", time.perf_counter() - t,
               f"random, 2 layers × 64, XLM-R architecture, one per seed → {work / 'init'}")  # fmt: skip
    # The bar counts pretraining steps of all runs, read from their train_log.jsonl while they run.
    bar = progress(total=len(seeds) * 2 * steps, desc="pretraining (all runs)", unit="step")
    logs = [
        work / f"seed-{seed}" / "pretrain" / arm / "train_log.jsonl" for seed in seeds for arm in ("mlm", "kbioxlm")
    ]

    def watch() -> None:
        if bar.n < bar.total:
            bar.update(min(sum(_logged_step(p) for p in logs), bar.total) - bar.n)

    try:
        outs = run_repeats(config, seeds, jobs=workers, log=log_path, threads=threads, watch=watch,
                           report=lambda name, secs: _stage(name, secs, "", bar),
                           min_seconds=MIN_STEP_SECONDS)  # fmt: skip
    finally:
        bar.close()
    runs = []
    for seed in seeds:
        arms = read_seed_results(outs[seed])
        timings = json.loads((outs[seed] / "timings.json").read_text(encoding="utf-8"))
        runs.append({"seed": seed, "arms": arms, "seconds": timings["total_seconds"]})
        print(f"seed {seed}: held-out terms EN→ZH / ZH→EN, NER F1: " + "; ".join(
            f"{arm} {m['term_retrieval_en_zh']:.1f} / {m['term_retrieval_zh_en']:.1f}, {m['ner_zero_shot_f1']:.1f}"
            for arm, m in arms.items()), flush=True)  # fmt: skip

    # 3. results ------------------------------------------------------------------------------
    results = {"arms": _aggregate(runs), "seconds": round(time.perf_counter() - t_start, 1)}
    write_json(work / "results.json", results)
    write_json(work / "runs.json", {
        "settings": {"model": s.model, "tokenizer": tokenizer, "pretrain_steps": steps, "ner_epochs": epochs,
                     "seeds": seeds, "workers": workers, "heldout": str(data["heldout"]), "n_heldout": len(held),
                     "pipeline": str(config)},
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
