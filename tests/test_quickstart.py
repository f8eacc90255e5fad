"""docs/quickstart.md section 3 is a test: its ```bash blocks run, in order, at the small size the doc
states, on the real shared data, so the by-hand commands cannot drift from the toolkit."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "quickstart.md"
SHARED = Path(os.environ.get("KBIOXLM_SHARED") or ROOT.parent / "shared")
SMALL = {
    "WARMUP_STEPS": "2",
    "STEPS": "2",
    "BATCH": "2",
    "EVAL_MAX": "4",
    "TASKS": "ade",
    "DIRECTIONS": "en-zh",
    "MAX_TRAIN": "16",
    "MAX_DEV": "8",
    "MAX_TEST": "16",
    "EPOCHS": "1",
}
NEEDED = [
    "data/kb/hpo/hp.obo",
    "data/kb/icd10/icd_10_v2019.xml",
    "data/kbioxlm-release/pretrain/pair_data.json",
    "data/parallel/paramed/nejm.dev.en",
    "models/multilingual-e5-small-zhen",
]


def bash_blocks(text: str, section: str = "## 3. Step by step, by hand") -> list[str]:
    """The ```bash blocks of one section of the doc, in order."""
    body = text.split(section, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```bash\n(.*?)^```$", body, flags=re.S | re.M)


def test_the_doc_states_the_small_size_the_test_uses() -> None:
    text = DOC.read_text(encoding="utf-8")
    blocks = bash_blocks(text)
    assert len(blocks) >= 7 and "kbioxlm benchmark" in blocks[-1]
    stated = " ".join(text.split("## 3. Step by step, by hand", 1)[1].split("```bash", 1)[0].split())
    for k, v in SMALL.items():
        assert f"{k}={v}" in stated, k
    assert "--out $O" in "".join(blocks)  # the documents step writes where the next steps read


@pytest.mark.skipif(
    not all((SHARED / p).exists() for p in NEEDED),
    reason=f"the shared data ({SHARED}: HPO, ICD-10, the release, ParaMed, the small model) is absent",
)
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_quickstart_by_hand_commands_run(tmp_path: Path) -> None:
    out = tmp_path / "by-hand"
    script = "set -euo pipefail\n" + "\n".join(bash_blocks(DOC.read_text(encoding="utf-8")))
    env = {
        **os.environ,
        **SMALL,
        "O": str(out),
        "KBIOXLM_SHARED": str(SHARED),
        "KBIOXLM_PROGRESS": "off",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stats = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith('{"concepts"')))
    assert stats["concepts"] > 0 and set(stats["names"]) >= {"en", "zh"}
    for level in ("entity.en+zh", "fact.en-zh", "fact.zh-en", "passage.pair_data", "passage.nejm.dev"):
        assert (out / "corpus" / f"{level}.jsonl").stat().st_size > 0, level
    # the short pretraining runs still write a final checkpoint each, and both exports load
    assert (out / "models" / "warmup" / "config.json").is_file() and (
        out / "models" / "kbioxlm" / "config.json"
    ).is_file()
    results = [json.loads(x) for x in (out / "bench" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["model"] for r in results) == ["e5-small-zhen", "kbioxlm-small"]
    assert all(r["n_test"] == 16 and r["n_train"] <= 16 for r in results)
    md = (out / "bench" / "results.md").read_text(encoding="utf-8")
    assert "train 16, dev 8, test 16" in md
