"""Data and collection: sample logs, datasets, grading, splits, backends and arms, collection."""
