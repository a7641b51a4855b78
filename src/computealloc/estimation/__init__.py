"""Estimation and the oracle: actions and kinds, the exact kernels, outcome tables, the solver."""
