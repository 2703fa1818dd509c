"""Fit: the public folder -> members (round, fold, seed, model) trained or probed, their out-of-fold
score, the ensemble, the pseudo-labels; every `auto` resolved first (policy), the time planned
(plan, measure). Reads public/ only; imports nothing of grading but its metrics."""
