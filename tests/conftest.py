"""Shared fixtures: a tiny random-init BERT saved to disk and a synthetic classic-GLUE folder.

Nothing here downloads anything. Tests that need the real data or model from ``../shared`` use the
``shared_glue_dir`` / ``shared_hub`` fixtures, which point at it (CI always has it).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never download; set before transformers loads

import pytest  # noqa: E402
from transformers import BertConfig, BertModel, BertTokenizer  # noqa: E402

from bitfit_edu.experiments.results import ResultStore  # noqa: E402

WORDS = "the a cat dog sat ran on mat big small red blue is was not very good bad film plot".split()
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def tiny_bert_config(**overrides) -> BertConfig:
    settings = dict(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64)
    return BertConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A random-init 2-layer BERT encoder with a word-level vocabulary, saved like a hub checkpoint."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizer(vocab_file=str(vocab)).save_pretrained(folder)
    BertModel(tiny_bert_config()).save_pretrained(folder)
    return str(folder)


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))


def write_synthetic_glue(root: Path, rows: int = 24) -> Path:
    """Classic-layout TSV files for RTE, SST-2, CoLA, MRPC and STS-B with random words and labels."""
    rng = random.Random(0)
    layouts = {
        "RTE": ("index\tsentence1\tsentence2\tlabel",
                lambda i: f"{i}\t{_sentence(rng)}\t{_sentence(rng)}\t{rng.choice(['entailment', 'not_entailment'])}"),
        "SST-2": ("sentence\tlabel", lambda i: f"{_sentence(rng)}\t{rng.randint(0, 1)}"),
        "CoLA": (None, lambda i: f"src\t{rng.randint(0, 1)}\t\t{_sentence(rng)}"),
        "MRPC": ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
                 lambda i: f"{rng.randint(0, 1)}\t{i}\t{i + 1}\t{_sentence(rng)}\t{_sentence(rng)}"),
        "STS-B": ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
                  lambda i: f"{i}\tg\tf\ty\t{i}\tn\tn\t{_sentence(rng)}\t{_sentence(rng)}\t{rng.uniform(0, 5):.3f}"),
    }
    for folder, (header, make_row) in layouts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for split in ("train", "dev"):
            lines = ([header] if header else []) + [make_row(i) for i in range(rows)]
            (root / folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def glue_dir(tmp_path) -> Path:
    return write_synthetic_glue(tmp_path / "glue")


@pytest.fixture
def shared_glue_dir() -> Path:
    folder = SHARED / "glue_data"
    if not folder.is_dir():
        pytest.skip("../shared/glue_data is not beside the checkout")
    return folder


@pytest.fixture
def classroom_model() -> str:
    """The real all-MiniLM-L6-v2 checkpoint folder inside ../shared/hf-hub (loads with no network)."""
    snapshots = SHARED / "hf-hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots"
    if not snapshots.is_dir():
        pytest.skip("../shared/hf-hub is not beside the checkout")
    return str(next(snapshots.iterdir()))


@pytest.fixture
def classroom_results() -> ResultStore:
    """The committed results of the classroom grids (results/classroom in this checkout)."""
    return ResultStore(Path(__file__).resolve().parents[1] / "results" / "classroom")


@pytest.fixture(autouse=True)
def _no_ambient_glue_dir(monkeypatch):
    """Tests say where their data is; a GLUE_DIR from the caller's shell must not leak in."""
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.delenv("BITFIT_EDU_PROFILE", raising=False)
