"""Sentiment analyzer: train, evaluate, export, predict and serve IMDB review classifiers.

Run ``python -m projects.sentiment_analyzer {train,evaluate,export,predict,serve} --help``.
"""
