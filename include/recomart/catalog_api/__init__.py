"""The product catalogue HTTP API that RecoMart ships (serves ``products.csv``, can inject faults).

Import ``recomart.catalog_api.app`` directly (``python -m recomart.catalog_api.app --help``).
"""
