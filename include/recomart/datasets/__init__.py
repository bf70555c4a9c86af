"""Data sets for RecoMart: the seeded synthetic shop (``recomart.datasets.generator``) is the default.

Import ``recomart.datasets.generator`` directly (kept out of this ``__init__`` so that
``python -m recomart.datasets.generator`` runs without a double-import warning).
"""
