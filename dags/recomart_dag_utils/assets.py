"""Assets that chain the RecoMart DAGs (producer outlet -> consumer schedule).

URIs follow the Postgres provider's form ``postgres://<host>/<database>/<schema>/<table>``; the host
part is the logical name of the warehouse, not a network address.
"""

from airflow.sdk import Asset

_WAREHOUSE = "postgres://warehouse:5432/recomart"

RAW_EVENTS = Asset("recomart_raw_events", uri=f"{_WAREHOUSE}/raw/events", group="recomart")
RAW_PRODUCTS = Asset("recomart_raw_products", uri=f"{_WAREHOUSE}/raw/products", group="recomart")
MARTS = Asset("recomart_marts", uri=f"{_WAREHOUSE}/marts/user_item_ratings", group="recomart")
MODEL = Asset("recomart_model", uri="recomart://mlflow/recommender", group="recomart")
RECOMMENDATIONS = Asset("recomart_recommendations", uri=f"{_WAREHOUSE}/reco/user_recommendations", group="recomart")
