"""Image classifier: train, evaluate, export, predict and serve a small CNN (and the airbench fast path).

Run ``python -m projects.image_classifier {train,evaluate,fast,export,predict,serve} --help``.
"""
