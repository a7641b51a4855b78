"""Training: IBPO sweeps and the optional supervised fine-tuning of a budget-aware model."""
