"""Ground floor: tasks, errors, audio I/O, manifests, metrics and the run-directory format.

Nothing here imports a stage (extract, cache_store, heads, losses, sweep, ensemble) or the application.
"""
