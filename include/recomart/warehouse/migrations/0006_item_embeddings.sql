-- recomart.search: one sentence embedding per product, refreshed incrementally.
create table if not exists reco.item_embeddings (
    item_id text primary key,
    model text not null,
    text_hash text not null,
    dim smallint not null,
    vector bytea not null check (octet_length(vector) = 4 * dim),
    embedded_at timestamptz not null default now()
);
comment on table reco.item_embeddings is
    'Sentence embedding of each product''s text (marts.dim_products), refreshed incrementally by recomart.search.';
comment on column reco.item_embeddings.model is
    'Model that made the vector (name@weights hash); a different model re-embeds every item.';
comment on column reco.item_embeddings.text_hash is
    'sha256 (hex) of the embedded text (recomart.search.text.product_texts); a change re-embeds the item.';
comment on column reco.item_embeddings.vector is
    'dim float32 values, little-endian, L2-normalised (numpy: frombuffer(vector, "<f4")).';
