"""Prompted LLM baselines (paper, Tables 4–5: ChatGPT/ChatGLM rows) for NER, RE (GAD) and DC (HoC).

The model sees a prompt built from a template file; few-shot demonstrations are drawn from the
train file with the *same* seeded K-shot sampling as fine-tuning
(:func:`kbioxlm.tasks.protocols.sample_fewshot`), shown as earlier user/assistant turns. Answers
are parsed robustly (:mod:`.parsing`) and scored with the fine-tuning metrics
(:mod:`kbioxlm.tasks.metrics`), so the numbers sit in the same table. An answer that cannot be
parsed is scored as "no prediction" (no entities / ``no`` / no labels) and counted in
``n_unparsed``. A request that fails for good (after the client's retries) stops the run unless
``max_failed`` allows it: more than ``max_failed`` failures (default 0) is an error and nothing is
written, because a score with missing answers is not the model's score (a dead endpoint used to
show up as F1 = 0). Answers already received are cached, so a rerun asks only for the failed ones.
Allowed failures are scored as "no prediction" and counted in ``n_failed``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..chat.cache import Cache, cache_key
from ..chat.client import ChatClient
from ..chat.templates import Template, load_template
from ..conll import bio_spans, join_tokens
from ..errors import KbioxlmError
from ..io import write_json, write_jsonl
from ..progress import progress as progress_bar
from ..tasks.finetune import METRIC_NAMES
from ..tasks.metrics import binary_scores, multilabel_scores, ner_scores
from ..tasks.protocols import sample_fewshot
from ..tasks.readers import HOC_LABELS, read_ner, read_seqcls
from .parsing import HOC_LABELS_ZH, locate_entities, parse_entities, parse_labels, parse_yes_no

log = logging.getLogger(__name__)

TASK_DATASET = {"ner": ("ade", "sentence"), "re": ("gad", "sentence"), "dc": ("hoc", "abstract")}
TYPE_DESCRIPTIONS = {
    "Drug": "Drug: a drug, medication or chemical given to the patient.",
    "ADE": "ADE: an adverse drug effect, i.e. a sign, symptom or disease caused by a drug.",
    "Chemical": "Chemical: a chemical or drug.",
    "Disease": "Disease: a disease, disorder or symptom.",
}


def _metric_names() -> dict[str, str]:
    return METRIC_NAMES


def _read(task: str, path: str | os.PathLike[str], lang: str | None) -> list[dict[str, Any]]:
    if task == "ner":
        return [dict(r) for r in read_ner(path, lang)]
    return [dict(r) for r in read_seqcls(path, lang, task)]


def _text(task: str, rec: dict[str, Any]) -> str:
    return join_tokens(rec["tokens"], rec["lang"])[0] if task == "ner" else rec["text"]


def _gold_answer(task: str, rec: dict[str, Any], label_names: Sequence[str]) -> str:
    """The answer a demonstration shows, in the format the prompt asks for."""
    if task == "ner":
        text, offsets = join_tokens(rec["tokens"], rec["lang"])
        ents = [f"{text[offsets[s][0] : offsets[e - 1][1]]} ({t})" for s, e, t in bio_spans(rec["tags"])]
        return "\n".join(ents) if ents else "none"
    if task == "re":
        return "yes" if int(rec["label"]) == 1 else "no"
    picked = [f"{j + 1}. {label_names[j]}" for j, v in enumerate(rec["label"]) if v]
    return "\n".join(picked) if picked else "none"


def build_messages(
    task: str,
    tpl: Template,
    rec: dict[str, Any],
    demos: Sequence[dict[str, Any]],
    values: dict[str, str],
    label_names: Sequence[str],
) -> list[dict[str, str]]:
    msgs: list[dict[str, str]] = []
    system = tpl.render_system(**values)
    if system:
        msgs.append({"role": "system", "content": system})
    for d in demos:
        msgs.append({"role": "user", "content": tpl.render_user(**values, text=_text(task, d))})
        msgs.append({"role": "assistant", "content": _gold_answer(task, d, label_names)})
    msgs.append({"role": "user", "content": tpl.render_user(**values, text=_text(task, rec))})
    return msgs


def run_llm_eval(
    task: str,
    test_path: str | os.PathLike[str],
    client: ChatClient,
    out_dir: str | os.PathLike[str],
    *,
    lang: str | None = None,
    train_path: str | os.PathLike[str] | None = None,
    shots: int = 0,
    seed: int = 0,
    dataset: str | None = None,
    prompt_dir: str | None = None,
    cache: Cache | None = None,
    limit: int | None = None,
    progress: bool = True,
    max_failed: int = 0,
) -> dict[str, Any]:
    """Prompt, parse, score; write ``results.json`` and ``predictions.jsonl`` into ``out_dir``."""
    if task not in TASK_DATASET:
        raise KbioxlmError(f"unknown task {task!r} (use ner, re or dc)")
    if max_failed < 0:
        raise KbioxlmError(f"--max-failed must be >= 0, got {max_failed}")
    if shots and not train_path:
        raise KbioxlmError("--shots needs --train (demonstrations are sampled from it)")
    test = _read(task, test_path, lang)
    if limit is not None:
        test = test[:limit]
    if not test:
        raise KbioxlmError(f"{test_path}: no test records")
    test_lang = lang or test[0]["lang"]
    ds_name, unit = TASK_DATASET[task]
    ds_name = dataset or ds_name
    demos: list[dict[str, Any]] = []
    demo_ids: list[str] = []
    train_lang = None
    if shots:
        train = _read(task, train_path, None)  # type: ignore[arg-type]
        train_lang = train[0]["lang"]
        demos, demo_ids = sample_fewshot(train, shots, seed, unit, dataset=ds_name, lang=train_lang)

    tpl = load_template(task, prompt_dir)
    zh = test_lang.startswith("zh")
    label_names: Sequence[str] = HOC_LABELS
    values: dict[str, str] = {}
    types: list[str] = []
    if task == "ner":
        types = sorted({t[2:] for r in list(test) + demos for t in r["tags"] if t != "O"})
        if not types:
            raise KbioxlmError(f"{test_path}: no entity types in the gold tags; cannot tell the model what to find")
        values = {
            "types": ", ".join(types),
            "type_descriptions": "\n".join(TYPE_DESCRIPTIONS[t] for t in types if t in TYPE_DESCRIPTIONS),
        }
    elif task == "dc":
        width = len(test[0]["label"])
        if width != len(HOC_LABELS):
            raise KbioxlmError(f"{test_path}: task dc expects the {len(HOC_LABELS)} HoC labels, rows have {width}")
        values = {
            "labels": "\n".join(
                f"{j + 1}. {n}" + (f" ({HOC_LABELS_ZH[j]})" if zh else "") for j, n in enumerate(HOC_LABELS)
            )
        }

    convs = [build_messages(task, tpl, r, demos, values, label_names) for r in test]
    cache = cache if cache is not None else Cache(None)
    keys = [
        cache_key("llm-eval", str(client.model), tpl.version, test_lang, task, json.dumps(c, ensure_ascii=False))
        for c in convs
    ]
    answers: dict[str, str | BaseException] = {}
    need: dict[str, list[dict[str, str]]] = {}
    for k, c in zip(keys, convs):
        hit = cache.get(k)
        if hit is not None:
            answers[k] = hit
        else:
            need.setdefault(k, c)
    need_keys = list(need)
    bar = progress_bar(total=len(need_keys), desc=f"llm-eval {task}", unit="req", enabled=progress, leave=False)

    def on_result(i: int, res: str | BaseException) -> None:
        k = need_keys[i]
        answers[k] = res
        if not isinstance(res, BaseException):
            cache.put(
                k,
                res,
                backend="llm-eval",
                model=str(client.model),
                prompt_version=tpl.version,
                source_lang=test_lang,
                target_lang=task,
            )
        bar.update(1)

    if need_keys:
        client.chat_many([need[k] for k in need_keys], on_result=on_result)
    bar.close()

    rows: list[dict[str, Any]] = []
    gold: list[Any] = []
    pred: list[Any] = []
    n_unparsed = n_failed = 0
    p: Any  # one prediction: tags (NER), 0/1 (RE) or a label vector (DC)
    for rec, k in zip(test, keys):
        ans = answers.get(k)
        raw = ans if isinstance(ans, str) else None
        if raw is None:
            n_failed += 1
        row: dict[str, Any] = {"id": rec["id"], "raw": raw}
        if raw is None:
            row["error"] = str(ans)
        if task == "ner":
            ents = parse_entities(raw or "", types)
            if raw is not None and not ents and not _says_none(raw):
                n_unparsed += 1
            p = locate_entities(rec["tokens"], rec["lang"], ents)
            row.update({"entities": [list(e) for e in ents], "tokens": rec["tokens"], "gold": rec["tags"], "pred": p})
            gold.append(rec["tags"])
        elif task == "re":
            v = parse_yes_no(raw or "")
            if raw is not None and v is None:
                n_unparsed += 1
            p = v if v is not None else 0
            row.update({"gold": int(rec["label"]), "pred": p})
            gold.append(int(rec["label"]))
        else:
            vec = parse_labels(raw or "")
            if raw is not None and vec is None:
                n_unparsed += 1
            p = vec if vec is not None else [0] * len(HOC_LABELS)
            row.update({"gold": rec["label"], "pred": p})
            gold.append(rec["label"])
        pred.append(p)
        rows.append(row)

    if n_failed > max_failed:  # a dead endpoint must not look like a model that scores 0
        last = next((str(a) for a in reversed(list(answers.values())) if isinstance(a, BaseException)), "")
        what = (
            f"every request failed ({n_failed} of {len(test)})"
            if n_failed == len(test)
            else f"{n_failed} of {len(test)} requests failed (more than --max-failed {max_failed})"
        )
        raise KbioxlmError(
            f"{client.url}: {what}, last error: {' '.join(last.split())[:300]}; nothing written "
            "(answers received are cached: a rerun asks only for the failed ones)"
        )
    if task == "ner":
        scores = ner_scores(gold, pred)
    elif task == "re":
        scores = binary_scores(gold, pred)
    else:
        scores = multilabel_scores(gold, pred)
    results: dict[str, Any] = {
        "task": task,
        "metric": _metric_names()[task],
        "f1": scores["f1"],
        "precision": scores["precision"],
        "recall": scores["recall"],
        "n_test": len(test),
        **{k: v for k, v in scores.items() if k not in ("f1", "precision", "recall")},
        "model": client.model,
        "base_url": client.base_url,
        "test_file": str(test_path),
        "test_lang": test_lang,
        "train_file": str(train_path) if train_path else None,
        "train_lang": train_lang,
        "shots": shots,
        "seed": seed if shots else None,
        "fewshot_ids": demo_ids,
        "dataset": ds_name,
        "prompt_version": tpl.version,
        "n_unparsed": n_unparsed,
        "n_failed": n_failed,
        "n_requests": len(need_keys),
        "n_cached": len(keys) - len(need_keys),
    }
    if task == "dc":
        results["label_names"] = list(HOC_LABELS)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "predictions.jsonl", rows)
    write_json(out / "results.json", results)
    return results


def _says_none(raw: str) -> bool:
    return bool(re.search(r"\bnone\b|no entit|无|没有", raw, flags=re.I))
