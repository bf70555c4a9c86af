"""Pure ranking: the components, the hybrid blend, the top-k kernels and the metrics.

Nothing here does I/O (no database, no MLflow, no Airflow, no Feast, no files): every function takes
arrays and data frames and returns arrays and data frames, so the same objects rank in training, in
the nightly job, behind an MLflow pyfunc and in the benchmarks.  ``model`` (training, tuning, the
gate, the registry) imports this package; nothing here imports any other ``recomart`` package.

Every component follows one small interface modelled on ``implicit``'s ``RecommenderBase``
(:class:`recomart.ranking.base.Recommender`): ``fit(training_set)``,
``recommend(user_ids, history, k, filter_seen)`` and ``similar_items(item_ids, k)``, with the
history passed at ranking time.  Modules:

- :mod:`~recomart.ranking.history`: the interaction history contract and its alignment on a catalogue;
- :mod:`~recomart.ranking.base`: the interface, :class:`~recomart.ranking.base.TrainingSet`, ranked results;
- :mod:`~recomart.ranking.svd`: biased SVD (scikit-surprise) fitted with sampled negatives, scored by GEMM;
- :mod:`~recomart.ranking.item_item`, :mod:`~recomart.ranking.content`,
  :mod:`~recomart.ranking.popularity`, :mod:`~recomart.ranking.buy_again`: the other components;
- :mod:`~recomart.ranking.ease`, :mod:`~recomart.ranking.rp3beta`: EASE (closed form, capped at the
  :data:`~recomart.ranking.ease.EASE_MAX_ITEMS` best-supported items) and the RP3β random walk, candidate
  generators evaluated on their own (not part of the hybrid's blend);
- :mod:`~recomart.ranking.ranker`, :mod:`~recomart.ranking.ranker_features`: the learned ranker (LightGBM
  LambdaRank over the union of the generators' top N, with score, rank, pair, user, item and cross
  features), fitted on a validation window; not in the registered artifact yet;
- :mod:`~recomart.ranking.blend`: blend weights, input options and the per-user min-max blend;
- :mod:`~recomart.ranking.hybrid`: the hybrid recommender with its cold-start rules (what is served);
- :mod:`~recomart.ranking.factors`, :mod:`~recomart.ranking.scoring`: factors and the numba top-k kernels;
- :mod:`~recomart.ranking.gemm`, :mod:`~recomart.ranking.exact_top_k`: dense user × item products, and
  the factors' top k, that do not depend on the other users of the call (the same scores whatever the
  block or shard);
- :mod:`~recomart.ranking.metrics`: ranking and rating metrics.

Submodules import their heavy dependencies (numba, scikit-learn, surprise, lightgbm) themselves; import what you
need from ``recomart.ranking.<module>``.
"""
