"""Semantic product search (issue 18): item embeddings, a hybrid BM25 + vector index, "looks like this".

A consumer package: it reads ``marts.dim_products`` and writes ``reco.item_embeddings``; only the CLI,
task bodies and the serving API import it.  Modules:

- :mod:`~recomart.search.minilm`: all-MiniLM-L6-v2 run torch-free (numpy) from the packaged weights;
- :mod:`~recomart.search.text`: the product text that is embedded, and its hash;
- :mod:`~recomart.search.store` / :mod:`~recomart.search.embed`: the table and its incremental refresh
  (:func:`~recomart.search.embed.embed_products`);
- :mod:`~recomart.search.retrievers`, :mod:`~recomart.search.fusion`, :mod:`~recomart.search.searcher`:
  retrieval, reciprocal rank fusion and the :class:`~recomart.search.searcher.Searcher`.

The "looks like this" neighbours of ``reco.similar_items`` are computed from the stored vectors by
:func:`recomart.ranking.embedding.vector_neighbours` in the nightly recommend job.

The model, tokenizer and BM25 come from the optional extra (``./recomart setup --with search``);
without it the searcher falls back to TF-IDF + LSA and says so.
"""
