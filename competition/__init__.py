"""A Kaggle-style competition harness for small image classification.

Pipeline, one module a stage: competitions/prepare (data into public/ and private/),
data (public tensors, augmentation), models, module + train (Lightning), ensemble,
pseudo_label, grading, leaderboard; run.py strings them together.
"""
