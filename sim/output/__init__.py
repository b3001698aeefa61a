"""Output layer: the run recorder (tables), run folders, summary figures and plots."""
