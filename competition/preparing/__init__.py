"""Prepare: a competition's source (a registry name or a Kaggle-form folder) -> public/ for the
entrant and private/ for the grader, at one stored image size, all or nothing."""
