"""A character-level GPT (nanoGPT-style) trained on tiny shakespeare: train, evaluate, export, predict
(or sample), serve.

Run ``python -m projects.text_generator`` for the commands; README.md for the details.
"""
