"""Experiments: profiles (smoke, classroom, paper), what a run is (``RunConfig``) and what it leaves
(``RunRecord``), the training engine, the results store, the resumable grid runner and the grids themselves.

Reading results (``results.ResultStore.load``) never imports the training engine. Backs notebooks 02-05, 08
and 09 (with the probes, CKA and the toy vision transformer), the CLI's ``run``, ``grid``, ``report`` and ``measure``.
"""
