"""Data: where GLUE and the models come from (the hub, or the offline folder), GLUE's tasks loaded into the
hub's schema, subsampled and tokenized, and their metrics.

Backs notebook 03 (one GLUE task from files to a score) and every training run.
"""
