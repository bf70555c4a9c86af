"""The Feast project of this deployment, declared as Feast's templates do.

Without a ``Project`` in the repository, ``feast plan`` and ``feast apply`` print "No
project found in the repository" and fall back to ``project:`` of ``feature_store.yaml``.
Both read the same variable, ``RECOMART_FEAST_PROJECT`` (one project per database prefix,
also the Redis key namespace; ``recomart env`` exports it), so their names always match,
as Feast requires.
"""

import os

from feast import Project

PROJECT_VARIABLE = "RECOMART_FEAST_PROJECT"

if not os.environ.get(PROJECT_VARIABLE):
    raise RuntimeError(
        f'{PROJECT_VARIABLE} is not set; run `eval "$(./recomart env)"` first (feature_store.yaml reads it too)'
    )

project = Project(
    name=os.environ[PROJECT_VARIABLE],
    description="RecoMart: user and item features of the recommender (Postgres offline, Redis online).",
    tags={"owner": "recomart"},
)
