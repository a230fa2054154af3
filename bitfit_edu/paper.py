"""The paper's own numbers (Ben-Zaken, Ravfogel, Goldberg, ACL 2022), for side-by-side tables.

Every value here is copied from the paper's tables (arXiv 2106.10199; the team's notes on them live
outside the repository, in the ``shared/paper`` folder beside the checkout); none is a result of this
project. Tables label them as the paper's.
"""

CITATION = "Ben-Zaken, Ravfogel, Goldberg. BitFit. ACL 2022 (arXiv 2106.10199)"

# %param column of the paper's tables, by the checkpoint it was computed for.
PARAM_PERCENT = {"bert-base-cased": 0.09, "bert-large-cased": 0.08, "roberta-base": 0.09}

# GLUE dev-set averages, BERT-base (the paper's "which parameters matter" table).
BERT_BASE_DEV_AVERAGE = {
    "full": 82.3,
    "bitfit": 82.4,
    "bitfit:b_q+b_m2": 81.1,
    "bitfit:b_m2": 80.0,
    "bitfit:b_q": 76.6,
    "frozen": 62.1,
    "rand_uniform": 78.5,
    "rand_row_col": 79.5,
}
BERT_BASE_PARAM_PERCENT = {
    "full": "100%", "bitfit": "0.09%", "bitfit:b_q+b_m2": "0.04%", "bitfit:b_m2": "0.03%",
    "bitfit:b_q": "0.01%", "frozen": "0.0%", "rand_uniform": "0.09%", "rand_row_col": "0.09%",
}

# GLUE dev-set averages for the three base models (Full-FT / BitFit).
DEV_AVERAGE_BY_MODEL = {
    "bert-base-cased": {"full": 82.3, "bitfit": 82.4},
    "bert-large-cased": {"full": 84.1, "bitfit": 84.2},
    "roberta-base": {"full": 85.3, "bitfit": 84.6},
}

# Another paper's numbers, on another model: the LoRA paper (Hu et al., ICLR 2022, arXiv 2106.09685),
# Table 2, RoBERTa-base, GLUE dev average over its tasks, with its trainable-parameter counts. Its BitFit and
# Full-FT rows were copied there from earlier papers. Tables label these as the LoRA paper's.
LORA_CITATION = "Hu et al. LoRA. ICLR 2022 (arXiv 2106.09685), Table 2, RoBERTa-base"
LORA_PAPER_ROBERTA_BASE = {
    "full": {"GLUE dev average": 86.4, "trainable parameters": "125.0M"},
    "bitfit": {"GLUE dev average": 85.2, "trainable parameters": "0.1M"},
    "lora_r8": {"GLUE dev average": 87.2, "trainable parameters": "0.3M"},
}
