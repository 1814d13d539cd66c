"""Training checks shared by the library's skorch nets.

:class:`FiniteCheck` stops ``fit`` as soon as a batch's loss or output is NaN or infinite,
with an error that names the likely cause, instead of returning NaN probabilities or
infinite predictions without a word. It is one of the default callbacks of the mixture of
experts' nets (and so of the gated ensembles' router nets, which derive from them).
"""

from __future__ import annotations

import torch
from skorch.callbacks import Callback

__all__ = ["FiniteCheck", "NonFiniteTrainingError"]


class NonFiniteTrainingError(ValueError):
    """The network's loss or output became NaN or infinite during ``fit``."""


class FiniteCheck(Callback):
    """Raise :class:`NonFiniteTrainingError` when a batch's loss or output is not finite.

    The message says where it happened (epoch, batch, training or validation) and the
    likely cause: inputs or targets on a huge scale (scale them, e.g. ``StandardScaler``)
    or a learning rate too large (lower ``lr``). Under float16 loss scaling, training batches
    are left to the ``GradScaler``, which skips a step whose values overflowed.
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs) -> None:
        self._batch = 0

    def on_epoch_begin(self, net, **kwargs) -> None:
        self._batch = 0

    def on_batch_end(self, net, batch=None, training=None, loss=None, y_pred=None,
                     **kwargs) -> None:
        self._batch = getattr(self, "_batch", 0) + 1
        if training and getattr(net, "_grad_scaler", None) is not None:
            return  # float16 loss scaling: an overflowing step is skipped, not applied
        output = y_pred[0] if isinstance(y_pred, tuple | list) else y_pred
        bad_loss = isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all())
        # The loss of a NaN/inf output is NaN/inf: in training the loss (a scalar) tells.
        bad_output = not training and isinstance(output, torch.Tensor) and not bool(
            torch.isfinite(output).all()
        )
        if bad_loss or bad_output:
            raise NonFiniteTrainingError(self._message(net, batch, training, loss, bad_loss))

    def _message(self, net, batch, training: bool, loss, bad_loss: bool) -> str:
        what = f"loss became {float(loss.detach().float())}" if bad_loss else (
            "output holds NaN or infinite values"
        )
        epoch = len(net.history)
        phase = "training" if training else "validation"
        scales = []
        if isinstance(batch, tuple | list) and len(batch) == 2:
            for name, part in (("input", batch[0]), ("target", batch[1])):
                largest = _largest(part)
                if largest is not None:
                    scales.append(f"largest |{name}| {largest:.3g}")
        seen = f" ({', '.join(scales)})" if scales else ""
        return (
            f"Training diverged: the network's {what} in epoch {epoch}, {phase} batch "
            f"{self._batch}{seen}. Likely causes: inputs or targets on a huge scale (scale them, "
            f"e.g. with sklearn.preprocessing.StandardScaler), or a learning rate too large "
            f"(lower `lr`, now {getattr(net, 'lr', '?')})."
        )


def _largest(part) -> float | None:
    if isinstance(part, torch.Tensor) and part.is_floating_point() and part.numel():
        return float(part.detach().abs().max())
    return None
