"""Fine-tuning on the shared engine with 2 CPU processes (gloo, ``torchrun``), and bf16 autocast.

Two processes split every training batch, so a batch keeps ``batch_size`` examples; they must end
with identical weights (BatchNorm buffers of the normalized head included), evaluate in shards that
gather to the predictions one process makes, and only the main process writes outputs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_finetune import NER_EN, tiny_model  # noqa: F401 (the tiny XLM-R fixture)

from kbioxlm.tasks.finetune import FinetuneConfig, _share, run_finetune

# Runs in each process under torchrun: the CLI (NER, CRF, early stopping, saved model), then the API
# (DC with the normalized head: BatchNorm buffers; 13 examples in batches of 4: a last batch of one,
# which leaves the second process without an example).
SCRIPT = """
import sys
from kbioxlm.cli import main
from kbioxlm.tasks.finetune import FinetuneConfig, run_finetune
model, work = sys.argv[1], sys.argv[2]
rc = main(["finetune", "--task", "ner", "--model", model, "--train", work + "/train.txt", "--dev", work + "/dev.txt",
           "--test", work + "/test.txt", "--out", work + "/ner", "--epochs", "3", "--batch-size", "6",
           "--learning-rate", "1e-3", "--num-threads", "1", "--save-model", "--no-progress"])
assert rc == 0
recs = [{"id": str(i), "lang": "en", "text": f"abstract {i} about hallmark {i % 3} .",
         "label": [int(i % 3 == j) for j in range(3)]} for i in range(13)]
run_finetune(FinetuneConfig(task="dc", model=model, train=recs, dev=recs[:4], test=recs[:7], head="normalized",
                            head_lr=1e-2, out=work + "/dc", epochs=2, batch_size=4, num_threads=1, progress=False))
"""


def _conll(path: Path, n: int, offset: int = 0) -> None:
    path.write_text(
        "".join(
            f"-DOCSTART-\t{i}\n\n" + "".join(f"{w}\t{t}\n" for w, t in zip(*NER_EN[(i + offset) % 4])) + "\n"
            for i in range(n)
        ),
        encoding="utf-8",
    )


def test_share_keeps_the_batch_mean() -> None:
    batch = [7, 3, 9, 1, 4]
    parts = [_share(batch, r, 2) for r in range(2)]
    assert sorted(i for p, _ in parts for i in p) == sorted(batch)
    # DDP averages over 2 processes: sum_r weight_r / 2 * mean_r == the batch mean for any losses
    losses = {7: 1.0, 3: 2.0, 9: 3.0, 1: 4.0, 4: 5.0}
    got = sum(w / 2 * sum(losses[i] for i in p) / len(p) for p, w in parts)
    assert math.isclose(got, sum(losses.values()) / 5)
    assert _share([5], 1, 2) == ([5], 0.0)  # no example left: runs one at weight 0
    assert _share(batch, 0, 1) == (batch, 1.0)


@pytest.mark.slow
def test_torchrun_two_processes_train_identical_weights(tiny_model: str, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    _conll(tmp_path / "train.txt", 21)
    _conll(tmp_path / "dev.txt", 4, 1)
    _conll(tmp_path / "test.txt", 9, 2)
    (tmp_path / "run.py").write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", str(tmp_path / "run.py"), tiny_model, str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ner: f1=") == 1, proc.stdout  # one process reports

    for task, n_test in (("ner", 9), ("dc", 7)):
        res = json.loads((tmp_path / task / "results.json").read_text())
        assert res["processes"] == 2 and res["n_test"] == n_test and 0.0 <= res["f1"] <= 100.0
        digests = res["rank_weight_digests"]
        assert len(digests) == 2 and digests[0] == digests[1], task
        rows = [json.loads(x) for x in (tmp_path / task / "predictions.jsonl").read_text().splitlines()]
        assert [r["id"] for r in rows] == [str(i) for i in range(n_test)]
        assert all(h["train_loss"] is not None and math.isfinite(h["train_loss"]) for h in res["history"])
    ner = json.loads((tmp_path / "ner" / "results.json").read_text())
    assert [h["steps"] for h in ner["history"]][:2] == [4, 8]  # 21 examples, batches of 6 shared by 2 processes
    dc = json.loads((tmp_path / "dc" / "results.json").read_text())
    assert [h["steps"] for h in dc["history"]] == [4, 8]

    # The sharded, gathered evaluation gives what one process predicts with the saved model.
    from kbioxlm.tasks.predict import run_predict

    got = run_predict(
        tmp_path / "ner" / "model",
        tmp_path / "test.txt",
        tmp_path / "again.jsonl",
        fmt="jsonl",
        num_threads=1,
        progress=False,
    )
    assert got["f1"] == ner["f1"]
    again = [json.loads(x)["pred"] for x in (tmp_path / "again.jsonl").read_text().splitlines()]
    assert again == [json.loads(x)["pred"] for x in (tmp_path / "ner" / "predictions.jsonl").read_text().splitlines()]


def test_bf16_autocast_runs_with_finite_loss(tiny_model: str, tmp_path: Path) -> None:
    recs = [{"id": str(i), "lang": "en", "tokens": NER_EN[i % 4][0], "tags": NER_EN[i % 4][1]} for i in range(8)]
    res = run_finetune(
        FinetuneConfig(
            task="ner",
            model=tiny_model,
            train=recs,
            dev=recs[:4],
            test=recs[:4],
            out=str(tmp_path / "out"),
            epochs=1,
            batch_size=4,
            lr=1e-3,
            num_threads=1,
            mixed_precision="bf16",
            progress=False,
        )
    )
    assert res["config"]["mixed_precision"] == "bf16" and math.isfinite(res["history"][0]["train_loss"])
    assert "processes" not in res and (tmp_path / "out" / "predictions.jsonl").is_file()
    from kbioxlm.errors import KbioxlmError

    with pytest.raises(KbioxlmError, match="mixed_precision must be no or bf16"):
        run_finetune(FinetuneConfig(task="ner", model=tiny_model, train=recs, mixed_precision="fp8", progress=False))
