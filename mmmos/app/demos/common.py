"""Steps both demos share: the ensembles (the paper's strategies plus ``stack``) with an answer file, and the report."""
from __future__ import annotations

from pathlib import Path


def ensembles_and_report(run: Path, answer: Path, answer_set: str = "pam_dev") -> Path:
    """Evaluate every default strategy plus stacking on ``run`` (its dev row is out-of-fold), write the answer file
    for ``answer_set``, print Table IV and write the HTML report; returns the report's path."""
    from mmmos import ensemble
    from mmmos.app.report import write_report

    ensemble.run_ensembles(run, (*ensemble.DEFAULT_STRATEGIES, "stack"), answer=str(answer), answer_set=answer_set)
    print((run / "ensembles" / "table_iv.md").read_text(), flush=True)
    return write_report(run)


__all__ = ["ensembles_and_report"]
