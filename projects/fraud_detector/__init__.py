"""Detect fraudulent card transactions: an autoencoder and Deep SVDD (no labels), an MLP and logistic
regression (labels); train, evaluate, export, predict (a CSV or Parquet file, in chunks) and serve.

Run ``python -m projects.fraud_detector`` for the commands; README.md for the details.
"""
