"""mmmos: no-reference multi-axis audio quality assessment (AudioMOS 2025 Track 2 by default).

Layers: ground ``mmmos.core`` (tasks, errors, audio, manifests, metrics, run directory) <- stages
(``mmmos.extract`` -> ``mmmos.cache_store`` -> ``mmmos.heads``/``mmmos.losses`` in ``mmmos.sweep``,
``mmmos.ensemble``) <- application ``mmmos.app`` (``mmmos.app.cli`` is the command line).
What is predicted (axes, score range, file layouts) comes from ``mmmos.core.tasks.get_task``.
"""
__version__ = "0.1.0"
