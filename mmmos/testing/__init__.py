"""Test and benchmark helpers (application layer): random-weight checkpoints of the real encoders.

``mmmos.testing.wavlm``, ``mmmos.testing.muq`` and ``mmmos.testing.m2d`` each offer
``write_random_checkpoint(out_dir, size="tiny"|"full", ...)``, writing files in the layout the
released weights use, so the loaders in ``mmmos.extract`` are exercised exactly as with real
weights.  Nothing in the library imports this package.
"""
