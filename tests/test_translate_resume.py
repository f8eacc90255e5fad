"""A translation job killed midway resumes from its cache: nothing answered is asked again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from openai_stub import OpenAIStub, fake_zh

ROOT = Path(__file__).resolve().parents[1]
DRUGS = [
    "aspirin",
    "heparin",
    "warfarin",
    "insulin",
    "digoxin",
    "lithium",
    "cisplatin",
    "opioids",
    "statins",
    "amiodarone",
    "metformin",
    "clozapine",
    "tamoxifen",
    "rituximab",
    "valproate",
    "phenytoin",
]


def _write_input(path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i, d in enumerate(DRUGS):
            fh.write(f"-DOCSTART-\t{i}\n\n{d}\tB-Drug\ncaused\tO\nsevere\tB-ADE\nrash\tI-ADE\n.\tO\n\n")


def _cmd(base_url: str, tmp: Path) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "tests" / "openai_stub.py"),
        "translate",
        "--task",
        "ner",
        "--input",
        str(tmp / "en.txt"),
        "--source-lang",
        "en",
        "--target-lang",
        "zh",
        "--backend",
        "openai",
        "--base-url",
        base_url,
        "--model",
        "stub",
        "--out",
        str(tmp / "zh.txt"),
        "--review",
        str(tmp / "review.jsonl"),
        "--cache",
        str(tmp / "cache.sqlite"),
        "--concurrency",
        "1",
        "--no-progress",
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    return env


def test_killed_job_resumes_without_retranslating(tmp_path: Path) -> None:
    _write_input(tmp_path / "en.txt")
    with OpenAIStub(fake_zh, delay=0.15) as stub:
        proc = subprocess.Popen(
            _cmd(stub.base_url, tmp_path), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 60
        while stub.n_requests < 5 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        killed_requests = stub.n_requests
        assert not (tmp_path / "zh.txt").exists()  # no half-written output under the final name
        with sqlite3.connect(tmp_path / "cache.sqlite") as conn:
            cached = conn.execute("SELECT count(*) FROM answer").fetchone()[0]
        assert 1 <= cached < len(DRUGS)
        # At most the one request in flight at the kill was lost.
        assert killed_requests - cached <= 1

        r2 = subprocess.run(_cmd(stub.base_url, tmp_path), env=_env(), capture_output=True, text=True)
        assert r2.returncode == 0, r2.stderr
        second = stub.n_requests - killed_requests
        assert second == len(DRUGS) - cached
        out2 = (tmp_path / "zh.txt").read_bytes()
        assert out2.count(b"-DOCSTART-") == len(DRUGS)

        r3 = subprocess.run(_cmd(stub.base_url, tmp_path), env=_env(), capture_output=True, text=True)
        assert r3.returncode == 0, r3.stderr
        assert stub.n_requests - killed_requests - second == 0  # a re-run is free
        assert (tmp_path / "zh.txt").read_bytes() == out2  # and byte-identical
