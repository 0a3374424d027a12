"""A character-level GPT (nanoGPT-style) trained on tiny shakespeare: train, sample, export.

Run ``python -m projects.text_generator`` for the commands; README.md for the details.
"""
