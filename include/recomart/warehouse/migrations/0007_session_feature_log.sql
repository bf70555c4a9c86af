-- The offline copy of the session features the API pushes to Feast (recomart.features.session):
-- the push source's batch source.  Columns as recomart.features.session.PUSH_COLUMNS, in order.
create table if not exists raw.user_session_features (
    user_id text not null,
    event_timestamp timestamptz not null,
    viewed_item_ids text[],
    viewed_at timestamptz[],
    carted_item_ids text[],
    carted_at timestamptz[],
    bought_item_ids text[],
    bought_at timestamptz[],
    views_30m bigint,
    carts_30m bigint,
    purchases_30m bigint,
    last_event_at timestamptz
);
