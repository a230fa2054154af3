"""What a notebook says of a declared grid: all its runs in, or which are missing and so what is interim."""

from bitfit_edu.experiments import grids
from bitfit_edu.experiments.profiles import get_profile


def test_a_notebook_says_whether_a_declared_grid_is_complete():
    profile = get_profile("classroom")
    configs = grids.settle_configs(profile)
    assert grids.completeness(configs, []) == f"All {len(configs)} declared runs are in: what follows reads the " \
                                              "whole grid."
    missing = [c for c in configs if c.label == "rand_row_col" and c.seed == 4]
    said = grids.completeness(configs, missing)
    assert said.startswith(f"Interim: 4 of the {len(configs)} declared runs are not in yet (random rows/columns: "
                           "4 of its 8 runs (RTE, MRPC, STS-B, CoLA))") and "can still change" in said
