"""Framework adapters, each behind its own optional extra; ``import losslab`` loads none of them.

- :mod:`losslab.integrations.lightning` (``pip install 'losslab[lightning]'``): the
  ``LosslabObjective`` module mixin and the ``LosslabDiagnostics`` callback.
- :mod:`losslab.integrations.hf` (``pip install 'losslab[hf]'``): ``LosslabTrainer`` and
  ``losslab_loss_func`` for the Hugging Face ``Trainer``.

Both build objectives and diagnostics through the engine (:mod:`losslab.engine.objective`,
:mod:`losslab.engine.diagnostics`), so a loss or diagnostic behaves as it does in a spec.
"""
