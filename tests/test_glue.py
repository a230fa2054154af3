"""GLUE loading in the hub schema, from classic folders: synthetic fixtures and the real ../shared data."""

import pytest

from bitfit_edu.data.glue import TASKS, get_task, load_split, subsample, tokenize
from bitfit_edu.errors import BitFitError


def test_task_names_and_aliases():
    assert get_task("SST-2").name == "sst2" and get_task("STS-B").name == "stsb" and get_task("RTE").name == "rte"
    with pytest.raises(BitFitError, match="unknown GLUE task 'squad'.*cola, sst2, mrpc"):
        get_task("squad")


@pytest.mark.parametrize("task,fields", [
    ("rte", ["sentence1", "sentence2", "label", "idx"]), ("sst2", ["sentence", "label", "idx"]),
    ("cola", ["sentence", "label", "idx"]), ("mrpc", ["sentence1", "sentence2", "label", "idx"]),
    ("stsb", ["sentence1", "sentence2", "label", "idx"]),
])
def test_classic_folder_gives_the_hub_schema(glue_dir, task, fields):
    split = load_split(task, "train", glue_dir)
    assert split.column_names == fields and len(split) == 24
    labels = split["label"]
    if task == "stsb":
        assert all(0 <= v <= 5 for v in labels)
    else:
        assert set(labels) <= {0, 1}
        assert split.features["label"].names == list(TASKS[task].label_names)


def test_string_labels_map_to_hub_ids(glue_dir):
    (glue_dir / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n"
                                              "1\tc\td\tnot_entailment\n")
    assert load_split("rte", "validation", glue_dir)["label"] == [0, 1]


def test_glue_dir_comes_from_the_environment(glue_dir, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    assert len(load_split("sst2", "validation")) == 24


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(BitFitError, match=r"missing GLUE file .*RTE/train.tsv.*must be a classic GLUE folder"):
        load_split("rte", "train", tmp_path)


def test_malformed_row_names_the_line(glue_dir):
    (glue_dir / "RTE" / "train.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n")
    with pytest.raises(BitFitError, match=r"train.tsv, line 3: 2 tab-separated fields, expected at least 4"):
        load_split("rte", "train", glue_dir)


def test_bad_label_lists_the_valid_ones(glue_dir):
    (glue_dir / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(BitFitError, match="label 'maybe' is not a rte label.*entailment, not_entailment"):
        load_split("rte", "train", glue_dir)


def test_wrong_header_is_reported(glue_dir):
    (glue_dir / "MRPC" / "train.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(BitFitError, match="header has no column '#1 String'"):
        load_split("mrpc", "train", glue_dir)


def test_unknown_split(glue_dir):
    with pytest.raises(BitFitError, match="unknown split of rte 'test'"):
        load_split("rte", "test", glue_dir)


def test_subsample_is_deterministic_and_checked(glue_dir):
    split = load_split("sst2", "train", glue_dir)
    assert subsample(split, 10, seed=1)["idx"] == subsample(split, 10, seed=1)["idx"]
    assert subsample(split, 10, seed=1)["idx"] != subsample(split, 10, seed=2)["idx"]
    assert len(subsample(split, None, seed=0)) == 24 and len(subsample(split, 100, seed=0)) == 24
    with pytest.raises(BitFitError, match="at least 1"):
        subsample(split, 0, seed=0)
    with pytest.raises(BitFitError, match="empty"):
        subsample(split.select([]), 5, seed=0)


def test_tokenize_keeps_labels_and_truncates(glue_dir, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoded = tokenize(load_split("rte", "train", glue_dir), tokenizer, get_task("rte"), max_length=8)
    assert set(encoded.column_names) >= {"input_ids", "attention_mask", "label"}
    assert "sentence1" not in encoded.column_names
    assert max(len(ids) for ids in encoded["input_ids"]) == 8


OFFICIAL_ROWS = {("cola", "train"): 8551, ("cola", "validation"): 1043, ("sst2", "train"): 67349,
                 ("sst2", "validation"): 872, ("mrpc", "train"): 3668, ("mrpc", "validation"): 408,
                 ("stsb", "train"): 5749, ("stsb", "validation"): 1500, ("rte", "train"): 2490,
                 ("rte", "validation"): 277, ("qnli", "validation"): 5463}


@pytest.mark.parametrize("task,split", list(OFFICIAL_ROWS))
def test_real_glue_has_the_official_row_counts(shared_glue_dir, task, split):
    dataset = load_split(task, split, shared_glue_dir)
    assert len(dataset) == OFFICIAL_ROWS[task, split]


def test_real_dev_label_counts(shared_glue_dir):
    rte = load_split("rte", "validation", shared_glue_dir)["label"]
    mrpc = load_split("mrpc", "validation", shared_glue_dir)["label"]
    assert (rte.count(0), rte.count(1)) == (146, 131)
    assert (mrpc.count(0), mrpc.count(1)) == (129, 279)


def write_tsv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(["\t".join(header)] + ["\t".join(r) for r in rows]) + "\n", encoding="utf-8")


def test_mnli_matched_and_mismatched(tmp_path):
    """MNLI's classic files: parse trees in extra columns, annotator labels, gold_label last."""
    header = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
              "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
    row = ["0", "1", "1e", "fiction", "( a )", "( b )", "(ROOT a)", "(ROOT b)", "A premise.", "A hypothesis."]
    write_tsv(tmp_path / "MNLI" / "train.tsv", header, [row + ["neutral", "neutral"]])
    for name, label in (("dev_matched.tsv", "contradiction"), ("dev_mismatched.tsv", "entailment")):
        write_tsv(tmp_path / "MNLI" / name, header[:-1] + ["label2", "gold_label"], [row + [label, label, label]])
    train = load_split("mnli", "train", tmp_path)
    assert train.column_names == ["premise", "hypothesis", "label", "idx"] and train["label"] == [1]
    assert train[0]["premise"] == "A premise."
    assert load_split("mnli", "validation_matched", tmp_path)["label"] == [2]
    assert load_split("mnli", "validation_mismatched", tmp_path)["label"] == [0]
    assert get_task("mnli").dev_split == "validation_matched"


def test_qqp_and_qnli(tmp_path):
    write_tsv(tmp_path / "QQP" / "train.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
              [["0", "1", "2", "How?", "Why?", "1"], ["1", "3", "4", "What?", "Who?", "0"]])
    qqp = load_split("qqp", "train", tmp_path)
    assert qqp.column_names == ["question1", "question2", "label", "idx"] and qqp["label"] == [1, 0]
    write_tsv(tmp_path / "QNLI" / "train.tsv", ["index", "question", "sentence", "label"],
              [["0", "Where?", "Here.", "not_entailment"]])
    qnli = load_split("qnli", "train", tmp_path)
    assert qnli.column_names == ["question", "sentence", "label", "idx"] and qnli["label"] == [1]


def test_example_texts_gives_one_sentence_or_a_pair(glue_dir):
    from bitfit_edu.data.glue import example_texts

    assert len(example_texts("sst2", 0, glue_dir)) == 1 and len(example_texts("mrpc", 3, glue_dir)) == 2
    assert all(isinstance(text, str) and text for text in example_texts("rte", 1, glue_dir))
