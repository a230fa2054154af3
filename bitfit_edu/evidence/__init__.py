"""Evidence: run records turned into tables, the paper's claims checked against them under one declared
protocol and decision rule (with the power to resolve them), and the figures.

Backs notebooks 03 (main table, claims, power), 04 (ablations), 05 (figures), 08 (the peft comparison) and
09 (expose or learn: its claims).
"""
