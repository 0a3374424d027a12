"""dlkit: the small shared library of the course "Deep Learning with PyTorch".

One module per concern: ``device``, ``config``, ``lesson``, ``data``, ``train``, ``checkpoint``,
``metrics``, ``plots``, ``progress``, ``course`` and ``doctor``. Import what you need, e.g.
``from dlkit.train import fit``.
"""

__version__ = "0.1.0"
