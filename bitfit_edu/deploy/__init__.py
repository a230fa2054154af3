"""Deployment: a task as a delta file (trained biases and head, with a manifest, checked on load) and one
frozen backbone serving many such tasks.

Backs notebook 06 and ``benchmarks/deployment.py``.
"""
