"""Randomly truncated and corrupted input files, one property per reader family (docs/robustness.md).

For each family a small valid file is cut at a random byte and/or has random bytes replaced,
inserted or deleted, then fed to the command that reads it. The command must either succeed or
exit 2 with exactly one ``error:`` line naming the file (with a line number inside the file where
the message gives one) — never a traceback (any other exception fails the test) and never a
partial output (on exit 2 the outputs do not exist and no temporary file is left beside them).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kbioxlm.cli import main  # noqa: E402
from kbioxlm.errors import KbioxlmError  # noqa: E402

ROOT = Path(__file__).resolve().parent
# KBIOXLM_FUZZ_EXAMPLES=500 for a longer hunt; 30 keeps the whole file well under a minute.
FUZZ = settings(
    max_examples=int(os.environ.get("KBIOXLM_FUZZ_EXAMPLES", "30")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ------------------------------------------------------------------------------------- mutations
SPECIAL = [
    b"\xff",
    b"\xe9",
    b"\xe4\xb8",
    b"\x00",
    b"\t",
    b"\n",
    b"\r\n",
    b"\r",
    b'"',
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"|",
    b"<",
    b">",
    b"&",
    b"!",
    b"-",
    b"#",
    b" ",
    b"\\",
    b"'",
    b"\xef\xbb\xbf",
]


@st.composite
def mutations(draw):
    """A list of edits, positions as fractions so one list applies to any file."""
    edit = st.one_of(
        st.tuples(st.just("cut"), st.floats(0, 1)),
        st.tuples(
            st.just("replace"), st.floats(0, 1), st.one_of(st.sampled_from(SPECIAL), st.binary(min_size=1, max_size=3))
        ),
        st.tuples(
            st.just("insert"), st.floats(0, 1), st.one_of(st.sampled_from(SPECIAL), st.binary(min_size=1, max_size=3))
        ),
        st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 40)),
    )
    return draw(st.lists(edit, min_size=1, max_size=3))


def mutate(data: bytes, edits) -> bytes:
    for e in edits:
        pos = int(e[1] * len(data))
        if e[0] == "cut":
            data = data[:pos]
        elif e[0] == "replace":
            data = data[:pos] + e[2] + data[pos + len(e[2]) :]
        elif e[0] == "insert":
            data = data[:pos] + e[2] + data[pos:]
        else:
            data = data[:pos] + data[pos + e[2] :]
    return data


# ------------------------------------------------------------------------------------- checking
def run(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue()


def check(rc: int, err: str, bad: Path, outputs: list[Path], also: tuple[Path, ...] = ()) -> None:
    """Success, or exit 2 with one line naming ``bad`` (or one of ``also``) and no output left."""
    assert rc in (0, 2), err
    if rc == 0:
        return
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    line = lines[0]
    assert any(str(p) in line for p in (bad, *also)), line
    m = re.search(re.escape(str(bad)) + r":(\d+)", line)
    if m:
        n_lines = bad.read_bytes().count(b"\n") + 1
        assert 1 <= int(m.group(1)) <= n_lines, (line, n_lines)
    for out in outputs:
        assert not out.exists(), (line, out)
        if out.parent.is_dir():
            left = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
            assert not left, left


def api_check(fn, bad: Path) -> None:
    """The reader's API: returns, or raises a one-line KbioxlmError naming the file."""
    try:
        fn()
    except KbioxlmError as exc:
        msg = str(exc)
        assert "\n" not in msg and str(bad) in msg, msg


@contextlib.contextmanager
def workdir():
    d = tempfile.mkdtemp(prefix="kbioxlm-fuzz-")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------------------------- samples
OBO = b"""format-version: 1.2
data-version: mini/releases/2025-01-01
ontology: mini

[Term]
id: MP:0000001
name: All

[Term]
id: MP:0000002
name: Abnormality of the heart
synonym: "Cardiac abnormality" EXACT layperson []
xref: UMLS:C0018798
is_a: MP:0000001 ! All

[Term]
id: MP:0000003
name: Tachycardia
alt_id: MP:0000033
synonym: "Fast \\"racing\\" heart" EXACT []
is_a: MP:0000002 ! Abnormality of the heart
relationship: part_of MP:0000002 ! Abnormality of the heart

[Typedef]
id: part_of
name: part of
"""

BABELON = """source_language\ttranslation_language\tsubject_id\tpredicate_id\tsource_value\ttranslation_value\ttranslation_status
en\tzh\tMP:0000002\trdfs:label\tAbnormality of the heart\t心脏异常\tOFFICIAL
en\tzh\tMP:0000033\trdfs:label\tTachycardia\t心动过速\tOFFICIAL
en\tzh\tMP:0000003\toboInOwl:hasExactSynonym\tFast heart\t心跳过快\tOFFICIAL
en\tzh\tMP:0000003\trdfs:label\tTachy\t过速\tCANDIDATE
""".encode()

ICD10 = b"""<icd_10_v2019>
  <item type="chapter"><name>I</name><description>Certain infectious diseases</description>
    <item type="block"><name>A00-A09</name><description>Intestinal infectious diseases</description>
      <item type="category"><name>A00</name><description>Cholera</description>
        <item type="subcategory"><name>A00.0</name><description>Cholera due to Vibrio cholerae</description></item>
      </item>
      <item type="category"><name>A01</name><description>Typhoid &amp; paratyphoid fevers</description></item>
    </item>
  </item>
</icd_10_v2019>
"""

CONCEPTS = """id\ttype\tlang\tname\tpreferred
D1\tDisease\ten\tasthma\t1
D1\tDisease\tzh\t哮喘\t1
D1\tDisease\ten\tbronchial asthma\t
C1\tChemical\ten\tsalbutamol\ttrue
C1\tChemical\tzh\t沙丁胺醇\tyes
""".encode()
RELATIONS = b"head\trel\ttail\nC1\tmay_treat\tD1\n"

DOCS = "".join(
    json.dumps(r, ensure_ascii=False) + "\n"
    for r in [
        {"id": "d1", "lang": "en", "text": "Salbutamol relieves asthma quickly."},
        {"id": "d2", "lang": "en", "text": "Bronchial asthma is treated with salbutamol."},
        {"id": "d3", "lang": "en", "text": "No drug here."},
    ]
).encode()

RECORDS = "".join(
    json.dumps(r, ensure_ascii=False) + "\n"
    for r in [
        {
            "id": "e1",
            "lang": "en",
            "task": "entity",
            "text": "沙丁胺醇 relieves asthma",
            "entities": [{"start": 0, "end": 4, "concept": "C1", "lang": "zh", "switched": True}],
        },
        {
            "id": "f1",
            "lang": "en",
            "task": "fact",
            "text": "salbutamol may treat 哮喘",
            "entities": [
                {"start": 0, "end": 10, "concept": "C1", "lang": "en"},
                {"start": 21, "end": 23, "concept": "D1", "lang": "zh"},
            ],
            "relations": [{"start": 11, "end": 20, "rel": "may_treat", "lang": "en", "head": 0, "tail": 1}],
        },
        {
            "id": "p1",
            "task": "passage",
            "text_a": "Asthma is common.",
            "lang_a": "en",
            "text_b": "哮喘很常见。",
            "lang_b": "zh",
            "label": "positive",
        },
        {"id": "m1", "lang": "en", "text": "plain monolingual text"},
    ]
).encode()

CONLL = (
    b"-DOCSTART-\t1\n\nSalbutamol\tB-Drug\nrelieves\tO\nasthma\tB-ADE\n.\tO\n\n"
    b"-DOCSTART-\t2\n\nbronchial\tB-ADE\nasthma\tI-ADE\nagain\tO\n"
)

SEQCLS = "".join(
    json.dumps(r, ensure_ascii=False) + "\n"
    for r in [
        {"id": "0", "sentence": "@GENE$ and asthma near @DISEASE$ .", "label": "1"},
        {"id": "1", "sentence": "salbutamol and @GENE$ in @DISEASE$ .", "label": "0"},
    ]
).encode()

PRETRAIN_YAML = b"""model: m
train_files: a.jsonl,b.jsonl#mlm
output_dir: runs/x
max_steps: 10
learning_rate: 1e-4
mix: {mlm: 0.5, entity: 0.5}
loss_weights:
  entity: 1.0
bf16: true
"""


@pytest.fixture(scope="module")
def kb_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzz-kb")
    (d / "c.tsv").write_bytes(CONCEPTS)
    (d / "r.tsv").write_bytes(RELATIONS)
    kb = d / "kb.sqlite"
    assert run("kb", "import", "tsv", "--concepts", d / "c.tsv", "--relations", d / "r.tsv", "--kb", kb)[0] == 0
    return kb


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory) -> dict:
    """A tiny RE data set (EN and ZH) and a valid benchmark config over it."""
    d = tmp_path_factory.mktemp("fuzz-bench")
    files: dict = {}
    for lang in ("en", "zh"):
        files[lang] = {}
        for split in ("train", "dev", "test"):
            p = d / lang / f"{split}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(SEQCLS)
            files[lang][split] = str(p)
    import yaml

    cfg = {
        "models": [{"name": "tiny", "path": "m"}],
        "tasks": [{"name": "syn-gad", "type": "re", "files": files}],
        "directions": ["en-zh"],
        "settings": ["zero-shot"],
        "seeds": [1],
        "finetune": {"epochs": 1, "lr": "5e-4", "early_stopping_patience": None},
    }
    return {"dir": d, "yaml": yaml.safe_dump(cfg, allow_unicode=True).encode()}


# ------------------------------------------------------------------------------------- properties
@FUZZ
@given(edits=mutations())
def test_obo(edits):
    with workdir() as d:
        bad = d / "mini.obo"
        bad.write_bytes(mutate(OBO, edits))
        kb = d / "kb.sqlite"
        check(*run("kb", "import", "obo", "--obo", bad, "--kb", kb), bad, [kb])


@FUZZ
@given(edits=mutations())
def test_babelon(edits):
    with workdir() as d:
        (d / "mini.obo").write_bytes(OBO)
        bad = d / "zh.babelon.tsv"
        bad.write_bytes(mutate(BABELON, edits))
        kb = d / "kb.sqlite"
        check(*run("kb", "import", "obo", "--obo", d / "mini.obo", "--translations", bad, "--kb", kb), bad, [kb])


@FUZZ
@given(which=st.sampled_from(["MRCONSO.RRF", "MRREL.RRF", "MRSTY.RRF"]), edits=mutations())
def test_rrf(which, edits):
    with workdir() as d:
        rrf = d / "rrf"
        rrf.mkdir()
        for name in ("MRCONSO.RRF", "MRREL.RRF", "MRSTY.RRF"):
            shutil.copyfile(ROOT / "fixtures" / "umls" / name, rrf / name)
        bad = rrf / which
        bad.write_bytes(mutate(bad.read_bytes(), edits))
        kb = d / "kb.sqlite"
        check(*run("kb", "import", "umls", "--rrf-dir", rrf, "--kb", kb), bad, [kb], also=(rrf,))


@FUZZ
@given(edits=mutations())
def test_icd10_xml(edits):
    with workdir() as d:
        bad = d / "icd.xml"
        bad.write_bytes(mutate(ICD10, edits))
        kb = d / "kb.sqlite"
        check(*run("kb", "import", "icd10", "--xml", bad, "--kb", kb), bad, [kb])


@FUZZ
@given(which=st.sampled_from(["concepts", "relations"]), edits=mutations())
def test_tsv(which, edits):
    with workdir() as d:
        (d / "concepts.tsv").write_bytes(CONCEPTS)
        (d / "relations.tsv").write_bytes(RELATIONS)
        bad = d / f"{which}.tsv"
        bad.write_bytes(mutate(bad.read_bytes(), edits))
        kb = d / "kb.sqlite"
        rc, err = run(
            "kb", "import", "tsv", "--concepts", d / "concepts.tsv", "--relations", d / "relations.tsv", "--kb", kb
        )
        check(rc, err, bad, [kb], also=(d / "concepts.tsv", d / "relations.tsv"))  # relations refer to concepts


@FUZZ
@given(edits=mutations())
def test_jsonl_documents(kb_file, edits):
    with workdir() as d:
        bad = d / "docs.jsonl"
        bad.write_bytes(mutate(DOCS, edits))
        out = d / "out" / "entity.jsonl"
        rc, err = run(
            "corpus",
            "entity",
            "--kb",
            kb_file,
            "--input",
            bad,
            "--lang",
            "en",
            "--target-lang",
            "zh",
            "--out",
            out,
            "--no-progress",
        )
        check(rc, err, bad, [out])


@FUZZ
@given(edits=mutations())
def test_jsonl_training_records(edits):
    from kbioxlm.pretrain.data import load_pretrain_records, parse_train_files

    with workdir() as d:
        bad = d / "records.jsonl"
        bad.write_bytes(mutate(RECORDS, edits))
        api_check(lambda: load_pretrain_records(parse_train_files(str(bad))), bad)


@FUZZ
@given(edits=mutations())
def test_conll(kb_file, edits):
    with workdir() as d:
        bad = d / "en.txt"
        bad.write_bytes(mutate(CONLL, edits))
        out, review = d / "zh.txt", d / "review.jsonl"
        rc, err = run(
            "translate",
            "--task",
            "ner",
            "--input",
            bad,
            "--source-lang",
            "en",
            "--target-lang",
            "zh",
            "--backend",
            "kb",
            "--kb",
            kb_file,
            "--kb-partial",
            "--out",
            out,
            "--review",
            review,
            "--no-cache",
            "--min-accepted",
            "0",
            "--no-progress",
        )
        check(rc, err, bad, [out, review])


@FUZZ
@given(edits=mutations())
def test_seqcls_json(kb_file, edits):
    with workdir() as d:
        bad = d / "gad.json"
        bad.write_bytes(mutate(SEQCLS, edits))
        out, review = d / "zh.json", d / "review.jsonl"
        rc, err = run(
            "translate",
            "--task",
            "seqcls",
            "--input",
            bad,
            "--source-lang",
            "en",
            "--target-lang",
            "zh",
            "--backend",
            "kb",
            "--kb",
            kb_file,
            "--out",
            out,
            "--review",
            review,
            "--no-cache",
            "--min-accepted",
            "0",
            "--no-progress",
        )
        check(rc, err, bad, [out, review])
        from kbioxlm.tasks.readers import read_seqcls

        api_check(lambda: read_seqcls(bad, task="re"), bad)


@FUZZ
@given(edits=mutations())
def test_yaml_benchmark_config(bench_data, edits):
    with workdir() as d:
        bad = d / "bench.yaml"
        bad.write_bytes(mutate(bench_data["yaml"], edits))
        rc, err = run("benchmark", "--config", bad, "--out", d / "o", "--dry-run")
        # a mutated file path inside the config is reported by the data reader: that names the data file
        check(rc, err, bad, [d / "o"], also=(bench_data["dir"], Path("m")))


@FUZZ
@given(edits=mutations())
def test_yaml_pretrain_config(edits):
    from kbioxlm.pretrain.trainer import load_pretrain_config

    with workdir() as d:
        bad = d / "pretrain.yaml"
        bad.write_bytes(mutate(PRETRAIN_YAML, edits))
        api_check(lambda: load_pretrain_config(bad), bad)
