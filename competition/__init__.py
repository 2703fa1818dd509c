"""A Kaggle-style competition harness for image classification.

Pipeline, one module a stage: competitions + prepare (data into public/ and private/),
splits, data (public tensors, augmentation), models, module + train (Lightning),
members (the unit of work) + executors, predict (TTA), ensemble, pseudo_label,
fit (rounds, out-of-fold score), publish (submission, grading, leaderboard, report);
run.py is prepare + fit + publish.
"""

import time as _time

__version__ = "0.2.0"
# `python -m competition` imports this package first: the command line's time limit counts from
# here, or from the process's own start just before it (fitting.measure.process_start)
IMPORTED_AT = _time.perf_counter()
