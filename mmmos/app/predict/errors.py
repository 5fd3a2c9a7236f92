"""Errors of predictor folders and ``mmmos predict``: all user-fixable, so all :class:`UserError`."""
from __future__ import annotations

from mmmos.core.errors import UserError


class PredictorError(UserError, RuntimeError):
    """A predictor folder, a model record, an encoder or an option does not fit; the message says which.

    (``RuntimeError`` stays a base so code written against the earlier class keeps catching it.)"""


class WeightsMismatchError(PredictorError):
    """Encoder weights whose sha256 differs from the one the model was trained with."""


class MissingWeightsError(PredictorError):
    """No weights were given (or recorded) for an encoder that needs them."""




def error_text(e: BaseException) -> str:
    """A clip's error cell: user-facing errors as they read, anything else with its type."""
    from mmmos.core.audio import AudioError

    if isinstance(e, (AudioError, PredictorError)):
        return str(e)
    return f"{type(e).__name__}: {e}"


__all__ = ["MissingWeightsError", "PredictorError", "WeightsMismatchError", "error_text"]
