"""mmmos: no-reference multi-axis audio quality assessment (PQ, PC, CE, CU).

Stages: audio -> ``extract`` (frozen encoders) -> ``cache_store`` -> ``heads``/``losses``
(``sweep``) -> saved predictions -> ``select_ensemble``.  ``mmmos.cli`` is the command line.
"""
__version__ = "0.1.0"
AXES = ("PQ", "PC", "CE", "CU")
