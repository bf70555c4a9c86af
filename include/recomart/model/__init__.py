"""Model stage: training, tuning, evaluation, the promotion gate and the MLflow registry.

Imports :mod:`recomart.ranking` (the pure algorithms) and nothing that consumes a model.  Modules:
``config`` (the one training configuration), ``split``, ``tuning``, ``blend_search``, ``catalogue``,
``evaluate``, ``train`` (one round), ``gate``, ``promotion`` (round + gate + registration),
``promotion_log`` (``ops.model_promotions``), ``registry``, ``pyfunc``, ``serialization``,
``tracking`` and ``charts`` (what a run logs), ``offline`` (the accuracy benchmark's scorers).

Submodules import their heavy dependencies (surprise, mlflow, numba) themselves, so importing this
package stays cheap; import what you need from ``recomart.model.<module>``.
"""
