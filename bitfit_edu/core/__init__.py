"""The method itself: the encoder layer in the paper's notation, the bias terms by paper name (b_q ... b_LN2),
the readout, what each method trains (BitFit, its subsets, Full-FT, Frozen, random baselines, and LoRA, IA3,
BEFT through peft), number formats, the one place that counts parameters, and what a layer represents
(features, linear probes, CKA).

Backs notebooks 01 (the equations), 02 (bias freezing), 04 (what each variant trains), 08 (peft methods)
and 09 (where the encoder starts, and what its layers hold).
"""
