"""The demos: the whole job end to end on built-in synthetic data, one driver and one corpus generator per task.

``command`` (the ``mmmos demo`` / ``mmmos demo-data`` sub-commands, dispatching to a task's driver through
:data:`command.DRIVERS`), ``track2`` and ``track1`` (the drivers), ``track2_corpus`` and ``track1_corpus`` (the
labelled corpora), ``common`` (the ensembles-and-report step both drivers share), ``figures`` (the README's demo
table, written from a demo's own output).
"""
