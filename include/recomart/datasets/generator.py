"""Seeded synthetic shop: a product catalogue, users and one event file per day.

Planted structure (so a model that uses history measurably beats popularity):

* items belong to ``K = categories x styles`` taste clusters; a cluster's items share
  category words, style words and mostly the same brand, so text similarity carries signal;
* each user has a sparse Dirichlet taste over the clusters, mixed with a little global noise;
* items have a Zipf-like popularity; a viewed item is drawn as
  ``P(i | u) = P(cluster(i) | u) * pop(i)**alpha / Z(cluster(i))``;
* a funnel turns views into carts and purchases; a user rarely buys the same item twice.

Everything is vectorised numpy with one loop over days, every day has its own seeded
random stream, files are written per day (bounded memory), atomically, byte-identical
for the same arguments.  Run ``python -m recomart.datasets.generator --help``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

EVENT_COLUMNS = ["event_id", "event_time", "user_id", "item_id", "event_type", "quantity", "unit_price"]
USER_COLUMNS = ["user_id", "country", "segment", "signup_date"]
PRODUCT_COLUMNS = ["item_id", "title", "description", "category", "brand", "price", "updated_at"]
EVENT_TYPES = ("view", "add_to_cart", "purchase")
_EVENT_TYPES = pa.array(EVENT_TYPES, type=pa.string())

# --- vocabularies: every category has 8 nouns, 6 materials, 4 uses, 4 features, 4 brands ----------
_CATALOGUE: dict[str, dict] = {
    "home_decor": {
        "median_price": 14.0,
        "nouns": [
            "candle holder",
            "photo frame",
            "wall clock",
            "cushion cover",
            "vase",
            "mirror",
            "lantern",
            "doorstop",
        ],
        "materials": ["glass", "ceramic", "oak", "brass", "linen", "rattan"],
        "uses": [
            "Brightens a living room",
            "Makes a thoughtful housewarming gift",
            "Adds warmth to a bedroom",
            "Finishes a hallway shelf",
        ],
        "features": ["hand finished detail", "fade resistant colour", "easy wall fixing", "gift boxed"],
        "brands": ["Lumen House", "Oakridge Home", "Nordvik", "Casa Bella"],
    },
    "kitchen": {
        "median_price": 12.0,
        "nouns": [
            "mug",
            "teapot",
            "baking tin",
            "chopping board",
            "storage jar",
            "cake stand",
            "lunch box",
            "utensil set",
        ],
        "materials": ["stoneware", "enamel", "bamboo", "stainless steel", "silicone", "porcelain"],
        "uses": [
            "Made for everyday cooking",
            "Perfect for weekend baking",
            "Keeps the pantry tidy",
            "Serves a family breakfast",
        ],
        "features": ["dishwasher safe", "oven safe to 220C", "food grade finish", "stackable design"],
        "brands": ["Copper Pot", "Bakewell", "Hob and Ladle", "Mesa Kitchen"],
    },
    "garden": {
        "median_price": 18.0,
        "nouns": [
            "planter",
            "watering can",
            "bird feeder",
            "garden trowel",
            "hose reel",
            "solar light",
            "seed tray",
            "wind chime",
        ],
        "materials": ["terracotta", "galvanised steel", "recycled plastic", "cedar", "wrought iron", "resin"],
        "uses": ["Ready for the patio", "Helps seedlings thrive", "Welcomes birds all year", "Lights the garden path"],
        "features": ["weatherproof coating", "frost resistant", "drainage holes", "uv stable"],
        "brands": ["Greenfinch", "Terra Verde", "Potting Shed", "Bloomfield"],
    },
    "toys": {
        "median_price": 15.0,
        "nouns": [
            "building blocks",
            "jigsaw puzzle",
            "plush bear",
            "toy car",
            "dolls house",
            "kite",
            "board game",
            "spinning top",
        ],
        "materials": ["beech wood", "soft fleece", "thick card", "die cast metal", "felt", "recycled card"],
        "uses": [
            "Hours of imaginative play",
            "Great for family game night",
            "A favourite for toddlers",
            "Builds fine motor skills",
        ],
        "features": ["non toxic paint", "ages 3 and up", "rounded safe edges", "storage tin included"],
        "brands": ["Tinker Town", "Little Otter", "Playwise", "Kite and Kin"],
    },
    "stationery": {
        "median_price": 6.0,
        "nouns": [
            "notebook",
            "gel pen set",
            "desk organiser",
            "greeting card",
            "wrapping paper",
            "sticker sheet",
            "weekly planner",
            "pencil case",
        ],
        "materials": ["recycled paper", "kraft card", "faux leather", "cotton canvas", "acrylic", "cork"],
        "uses": [
            "Keeps your desk organised",
            "Ideal for journaling",
            "For birthdays and thank yous",
            "Plans the week ahead",
        ],
        "features": ["lay flat binding", "acid free pages", "smudge proof ink", "foil accents"],
        "brands": ["Paperlark", "Inkwell", "Nib and Quill", "Folio"],
    },
    "electronics": {
        "median_price": 35.0,
        "nouns": [
            "wireless earbuds",
            "phone charger",
            "bluetooth speaker",
            "smart plug",
            "usb cable",
            "power bank",
            "desk lamp",
            "webcam",
        ],
        "materials": ["aluminium", "abs plastic", "braided nylon", "tempered glass", "matte polymer", "rubberised"],
        "uses": [
            "Charges devices fast",
            "Streams music all day",
            "Upgrades the home office",
            "Controls appliances from your phone",
        ],
        "features": ["usb c fast charging", "20 hour battery", "noise cancelling", "two year warranty"],
        "brands": ["Voltari", "Pulse Audio", "Nexa", "Brightcell"],
    },
    "beauty": {
        "median_price": 9.0,
        "nouns": [
            "face cream",
            "lip balm",
            "shampoo bar",
            "bath bomb",
            "hand soap",
            "nail polish",
            "eau de parfum",
            "body lotion",
        ],
        "materials": ["shea butter", "aloe vera", "argan oil", "lavender", "coconut oil", "vitamin e"],
        "uses": [
            "Soothes dry skin",
            "A calming bath time ritual",
            "Nourishes hair from root to tip",
            "Leaves hands soft",
        ],
        "features": ["cruelty free", "vegan formula", "dermatologically tested", "plastic free pack"],
        "brands": ["Wild Rose", "Pure Botanica", "Glow Lab", "Saltwater Apothecary"],
    },
    "sports": {
        "median_price": 20.0,
        "nouns": [
            "yoga mat",
            "water bottle",
            "resistance band",
            "running socks",
            "gym bag",
            "skipping rope",
            "foam roller",
            "tennis balls",
        ],
        "materials": ["natural rubber", "merino wool", "ripstop nylon", "neoprene", "tpe foam", "polyester mesh"],
        "uses": ["Built for home workouts", "Made for long runs", "Speeds up recovery", "Goes from gym to court"],
        "features": ["non slip grip", "sweat wicking", "leak proof lid", "lightweight build"],
        "brands": ["Stride", "Peak Form", "Flexa", "Court King"],
    },
    "fashion": {
        "median_price": 22.0,
        "nouns": ["scarf", "beanie hat", "belt", "tote bag", "sunglasses", "wallet", "gloves", "umbrella"],
        "materials": ["cashmere", "organic cotton", "vegan leather", "wool blend", "silk", "denim"],
        "uses": ["Finishes an autumn outfit", "Carries the daily essentials", "Keeps out the cold", "Travels well"],
        "features": ["one size fits most", "polarised lenses", "rfid blocking", "machine washable"],
        "brands": ["Tailor Row", "Marlow", "North Knit", "Urban Fable"],
    },
    "books": {
        "median_price": 11.0,
        "nouns": [
            "cookbook",
            "novel",
            "travel guide",
            "colouring book",
            "picture book",
            "poetry collection",
            "biography",
            "puzzle book",
        ],
        "materials": [
            "hardback",
            "paperback",
            "illustrated edition",
            "large print",
            "collector edition",
            "pocket edition",
        ],
        "uses": [
            "A page turner for holidays",
            "Recipes for every season",
            "Inspires the next trip",
            "Bedtime reading for children",
        ],
        "features": ["bestselling author", "signed bookplate", "full colour photographs", "award winner"],
        "brands": ["Penfold Press", "Atlas Books", "Lantern Editions", "Quire"],
    },
}
_STYLES = {
    "classic": ["Classic", "Vintage", "Heritage", "Traditional"],
    "modern": ["Modern", "Minimalist", "Sleek", "Contemporary"],
    "playful": ["Colourful", "Retro", "Whimsical", "Bright"],
}
_ADJECTIVES = ["large", "small", "deluxe", "mini", "premium", "versatile", "handmade", "limited edition"]
_BRAND_PRICE_FACTOR = np.array([1.0, 1.3, 0.85, 1.6])
_COUNTRIES = [
    "United Kingdom",
    "Germany",
    "France",
    "EIRE",
    "Spain",
    "Netherlands",
    "Belgium",
    "Switzerland",
    "Portugal",
    "Norway",
    "Australia",
    "Italy",
]
_COUNTRY_WEIGHTS = np.array([60, 7, 7, 5, 4, 4, 3, 3, 2, 2, 2, 1], dtype=float)
_SEGMENTS = ["consumer", "business", "wholesale"]
_SEGMENT_WEIGHTS = np.array([0.75, 0.18, 0.07])
_HOURLY = np.array([1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 9, 10, 10, 9, 9, 9, 10, 12, 14, 14, 12, 7, 3], dtype=float)
_WEEKDAY = np.array([1.0, 1.0, 1.05, 1.1, 1.15, 0.9, 0.85])

# funnel and behaviour constants
_P_CART = 0.25  # view -> add_to_cart
_P_BUY = 0.45  # add_to_cart -> purchase
_SALE_FACTOR = 0.9  # price of the 10% of purchases made on sale
_P_REPEAT = 0.02  # share of repeat purchases kept (a user rarely re-buys an item)
_NOISE = 0.10  # share of views drawn from the global cluster mix instead of the user's taste
_TASTE_CONCENTRATION = 0.05  # Dirichlet shape per cluster (x cluster share x clusters): small = sparse
_EVENTS_PER_VIEW = 1.0 + _P_CART + _P_CART * _P_BUY


@dataclass(frozen=True)
class GeneratedSummary:
    """What :func:`generate` wrote."""

    out_dir: Path
    users: int
    items: int
    events: int
    views: int
    carts: int
    purchases: int
    event_files: int
    start_date: date
    end_date: date

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(out_dir=str(self.out_dir), start_date=self.start_date.isoformat(), end_date=self.end_date.isoformat())
        return d


def _vocab(key: str) -> np.ndarray:
    """A (categories x words) array of one vocabulary."""
    return np.array([_CATALOGUE[c][key] for c in _CATALOGUE])


def _text_ids(
    rng: np.random.Generator, n: int, prefixes: Sequence[str], shares: Sequence[float], suffix_share: float = 0.0
) -> np.ndarray:
    """``n`` distinct realistic text codes such as ``85123A``, ``P10042``, ``C17850``, ``U00042``."""
    width = max(5, len(str(4 * n)))
    group = rng.choice(len(prefixes), size=n, p=np.asarray(shares) / np.sum(shares))
    ids = np.empty(n, dtype=object)
    for g, prefix in enumerate(prefixes):  # a handful of id formats, not a loop over rows
        mask = group == g
        k = int(mask.sum())
        low = 9 * 10 ** (width - 2) if prefix == "" else 1  # bare numbers: ~1% keep a leading zero
        numbers = low + rng.choice(10**width - low, size=k, replace=False)
        codes = np.strings.zfill(numbers.astype(str), width)
        if prefix == "" and suffix_share > 0:
            letters = np.array(list("ABCDEFGHJKLMNPRSTW"))[rng.integers(0, 18, size=k)]
            codes = np.where(rng.random(k) < suffix_share, np.strings.add(codes, letters), codes)
        ids[mask] = np.strings.add(prefix, codes).astype(object)
    return ids


def _fmt_money(values: np.ndarray) -> np.ndarray:
    cents = np.rint(np.asarray(values, dtype=float) * 100).astype(np.int64)
    return np.strings.add(
        np.strings.add((cents // 100).astype(str), "."), np.strings.zfill((cents % 100).astype(str), 2)
    )


def _fmt_times(day_start: np.datetime64, seconds: np.ndarray) -> np.ndarray:
    stamps = day_start + seconds.astype("timedelta64[s]")
    return np.strings.replace(np.datetime_as_string(stamps, unit="s"), "T", " ")


Columns = dict[str, np.ndarray]


def _write_csv(columns: Columns, path: Path) -> None:
    """Write equally long column arrays as CSV, atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(list(columns))
        writer.writerows(zip(*(np.asarray(col).tolist() for col in columns.values()), strict=True))
    os.replace(tmp, path)


def _write_events(table: pa.Table, path: Path) -> None:
    """Write one day of events fast with Arrow (no field needs quoting; Arrow refuses one that would)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, handle, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    os.replace(tmp, path)


@lru_cache(maxsize=1)
def _time_of_day() -> pa.Array:
    """The 86,400 strings ``' HH:MM:SS'``, indexed by second of the day."""
    text = np.strings.replace(_fmt_times(np.datetime64("2000-01-01T00:00:00"), np.arange(86400)), "2000-01-01", "")
    return pa.array(text.astype(object), type=pa.string())


def _cluster_cdf_sample(cdf_flat: np.ndarray, row: np.ndarray, u: np.ndarray, width: int) -> np.ndarray:
    """Vectorised categorical draw: row r's CDF lives at ``cdf_flat[r*width:(r+1)*width] - r``."""
    pos = np.searchsorted(cdf_flat, row + u, side="right")
    return pos - row * width


@dataclass
class _Catalogue:
    ids: pa.Array
    category: np.ndarray
    cluster: np.ndarray
    prices: pa.Array  # list prices as text, then the sale prices (index + n_items)
    order: np.ndarray  # item indices grouped by cluster
    cdf: np.ndarray  # per-cluster CDF over ``order`` (cluster k spans values (k, k+1])
    cluster_share: np.ndarray


def _make_catalogue(n_items: int, seed: int, alpha: float, start: date, end: date) -> tuple[_Catalogue, Columns]:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    categories = np.array(list(_CATALOGUE))
    n_cat, n_style = len(categories), len(_STYLES)
    n_clusters = n_cat * n_style
    cat = rng.choice(n_cat, size=n_items, p=rng.dirichlet(np.full(n_cat, 6.0)))
    style = rng.integers(0, n_style, size=n_items)
    brand_slot = np.where(rng.random(n_items) < 0.8, style, 3)  # style s mostly sold by brand s
    cluster = cat * n_style + style

    nouns, materials, uses, feats, brands = (_vocab(k) for k in ("nouns", "materials", "uses", "features", "brands"))
    noun = nouns[cat, rng.integers(0, nouns.shape[1], size=n_items)]
    material = materials[cat, rng.integers(0, materials.shape[1], size=n_items)]
    use = uses[cat, rng.integers(0, uses.shape[1], size=n_items)]
    feat = np.strings.capitalize(feats[cat, rng.integers(0, feats.shape[1], size=n_items)])
    brand = brands[cat, brand_slot]
    style_words = np.array(list(_STYLES.values()))
    word = style_words[style, rng.integers(0, 4, size=n_items)]
    word2 = np.strings.lower(style_words[style, rng.integers(0, 4, size=n_items)])
    adj = np.array(_ADJECTIVES)[rng.integers(0, len(_ADJECTIVES), size=n_items)]
    sp = " "
    title = np.strings.add(np.strings.add(np.strings.add(word, sp), np.strings.add(material, sp)), noun)
    title = np.where(rng.random(n_items) < 0.3, np.strings.add(title, np.strings.add(" ", adj)), title)
    description = np.strings.add(np.strings.add("A ", adj), np.strings.add(sp, noun))
    for part in (" in ", material, " from the ", brand, sp, word2, " range. ", use, ". ", feat, "."):
        description = np.strings.add(description, part)

    median = np.array([_CATALOGUE[c]["median_price"] for c in categories])
    raw_price = median[cat] * _BRAND_PRICE_FACTOR[brand_slot] * rng.lognormal(0.0, 0.45, size=n_items)
    price = np.maximum(np.round(raw_price) - 0.01, 0.49)

    # Zipf-like popularity over the whole catalogue, sampled within clusters as pop**alpha
    rank = rng.permutation(n_items)
    weight = (1.0 / (rank + 1.0)) ** alpha
    order = np.lexsort((np.arange(n_items), cluster))
    w_sorted = weight[order]
    c_sorted = cluster[order]
    mass = np.bincount(cluster, weights=weight, minlength=n_clusters)
    cdf = np.cumsum(w_sorted)
    start_of = np.concatenate([[0.0], np.cumsum(mass)])[c_sorted]
    cdf = (cdf - start_of) / mass[c_sorted]
    cdf = np.minimum(cdf, 1.0) + c_sorted
    last = np.r_[c_sorted[1:] != c_sorted[:-1], True]
    cdf[last] = c_sorted[last] + 1.0

    # catalogue timestamps: most last changed before the window, some during it
    window_s = max((end - start).days, 1) * 86400
    offset = np.where(
        rng.random(n_items) < 0.85, -rng.integers(1, 400 * 86400, size=n_items), rng.integers(0, window_s, size=n_items)
    )
    updated = _fmt_times(np.datetime64(start, "s"), offset)
    ids = _item_ids(rng, n_items)
    price_text = _fmt_money(price)
    columns = {
        "item_id": ids,
        "title": title,
        "description": description,
        "category": categories[cat],
        "brand": brand,
        "price": price_text,
        "updated_at": updated,
    }
    prices = np.concatenate([price_text, _fmt_money(price * _SALE_FACTOR)]).astype(object)
    catalogue = _Catalogue(
        ids=pa.array(ids, type=pa.string()),
        category=cat,
        cluster=cluster,
        prices=pa.array(prices, type=pa.string()),
        order=order,
        cdf=cdf,
        cluster_share=mass / mass.sum(),
    )
    return catalogue, columns


def _item_ids(rng: np.random.Generator, n_items: int) -> np.ndarray:
    """Item codes: Online-Retail-like numbers (some with a letter suffix) and ``P``-prefixed SKUs."""
    return _text_ids(rng, n_items, prefixes=["", "P"], shares=[0.65, 0.35], suffix_share=0.25)


@dataclass
class _Users:
    ids: pa.Array
    signup_day: np.ndarray  # day index (may be negative) from the first generated day
    activity: np.ndarray
    wholesale: np.ndarray
    taste_cdf: np.ndarray  # flattened per-user CDF over clusters, row r shifted by r


def _make_users(n_users: int, days: int, seed: int, start: date, catalogue: _Catalogue) -> tuple[_Users, Columns]:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    ids = _text_ids(rng, n_users, prefixes=["C", "U"], shares=[0.7, 0.3])
    country = np.array(_COUNTRIES)[
        rng.choice(len(_COUNTRIES), size=n_users, p=_COUNTRY_WEIGHTS / _COUNTRY_WEIGHTS.sum())
    ]
    segment = rng.choice(len(_SEGMENTS), size=n_users, p=_SEGMENT_WEIGHTS)
    signup_day = np.where(
        rng.random(n_users) < 0.8, -rng.integers(1, 730, size=n_users), rng.integers(0, max(days, 1), size=n_users)
    )
    activity = rng.lognormal(0.0, 0.9, size=n_users)
    activity *= np.where(segment == 2, 1.5, 1.0)
    activity /= activity.mean()

    share = catalogue.cluster_share
    n_clusters = share.size
    present = share > 0
    shape = np.where(present, _TASTE_CONCENTRATION * present.sum() * np.maximum(share, 1e-12), 1.0)
    taste = rng.gamma(shape, 1.0, size=(n_users, n_clusters)) * present
    taste += 1e-12 * present
    taste /= taste.sum(axis=1, keepdims=True)
    taste = (1.0 - _NOISE) * taste + _NOISE * share
    cdf = np.minimum(np.cumsum(taste, axis=1), 1.0)
    cdf[:, -1] = 1.0
    cdf += np.arange(n_users)[:, None]
    signup = (np.datetime64(start, "D") + signup_day.astype("timedelta64[D]")).astype(str)
    columns = {"user_id": ids, "country": country, "segment": np.array(_SEGMENTS)[segment], "signup_date": signup}
    users = _Users(
        ids=pa.array(ids, type=pa.string()),
        signup_day=signup_day,
        activity=activity,
        wholesale=segment == 2,
        taste_cdf=cdf.ravel(),
    )
    return users, columns


def _day_events(
    d: int, day: date, seed: int, users: _Users, cat: _Catalogue, views_per_user_day: float, purchased: np.ndarray
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """One day's events (sorted by time) and the updated sorted array of purchased user*item keys."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, d)))
    n_users, n_items = len(users.ids), len(cat.ids)
    n_clusters = cat.cluster_share.size
    lam = views_per_user_day * users.activity * _WEEKDAY[day.weekday()] * (users.signup_day <= d)
    per_user = rng.poisson(lam)
    u = np.repeat(np.arange(n_users), per_user)
    n = u.size
    session = rng.choice(24, size=n_users, p=_HOURLY / _HOURLY.sum()) * 3600 + rng.integers(0, 3600, n_users)
    t_view = np.minimum(session[u] + rng.integers(0, 1800, size=n), 86399)
    cluster = _cluster_cdf_sample(users.taste_cdf, u, rng.random(n), n_clusters)
    pos = np.searchsorted(cat.cdf, cluster + rng.random(n), side="right")
    item = cat.order[np.minimum(pos, n_items - 1)]

    cart = rng.random(n) < _P_CART
    buy = cart & (rng.random(n) < _P_BUY)
    key = u.astype(np.int64) * n_items + item
    bought_before = np.zeros(n, dtype=bool)
    if purchased.size:
        idx = np.minimum(np.searchsorted(purchased, key), purchased.size - 1)
        bought_before = purchased[idx] == key
    first = np.zeros(n, dtype=bool)
    buy_idx = np.flatnonzero(buy)
    _, first_pos = np.unique(key[buy_idx], return_index=True)
    first[buy_idx[first_pos]] = True
    buy &= first & (~bought_before | (rng.random(n) < _P_REPEAT))
    purchased = np.union1d(purchased, key[buy])

    qty = rng.geometric(0.7, size=n) * np.where(users.wholesale[u], rng.choice([6, 12, 24], size=n), 1)
    t_cart = np.minimum(t_view + rng.integers(10, 600, size=n), 86399)
    t_buy = np.minimum(t_cart + rng.integers(30, 900, size=n), 86399)
    on_sale = rng.random(n) < 0.1
    ci, bi = np.flatnonzero(cart), np.flatnonzero(buy)
    users_all = np.concatenate([u, u[ci], u[bi]])
    items_all = np.concatenate([item, item[ci], item[bi]])
    kind = np.concatenate([np.zeros(n, np.int8), np.ones(ci.size, np.int8), np.full(bi.size, 2, np.int8)])
    t_all = np.concatenate([t_view, t_cart[ci], t_buy[bi]])
    q_all = np.concatenate([np.ones(n, np.int64), qty[ci], qty[bi]])
    p_all = np.concatenate([item, item[ci], item[bi] + n_items * on_sale[bi]])
    order = np.lexsort((kind, items_all, users_all, t_all))
    m = order.size
    seq = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, m + 1)), pa.string()), max(7, len(str(m))), "0")
    table = pa.table(
        {
            "event_id": pc.binary_join_element_wise(day.strftime("%Y%m%d-"), seq, ""),
            "event_time": pc.binary_join_element_wise(day.isoformat(), _time_of_day().take(t_all[order]), ""),
            "user_id": users.ids.take(users_all[order]),
            "item_id": cat.ids.take(items_all[order]),
            "event_type": _EVENT_TYPES.take(kind[order]),
            "quantity": pa.array(q_all[order]),
            "unit_price": cat.prices.take(p_all[order]),
        }
    )
    counts = np.bincount(kind, minlength=3)
    return table, purchased, counts


def later_days(
    *,
    users: int = 2000,
    items: int = 500,
    days: int = 60,
    seed: int = 42,
    events_per_user_day: float = 1.5,
    popularity_alpha: float = 0.8,
) -> Iterator[pa.Table]:
    """The events of the days after a generated shop's last day, one table per day, from the same
    planted tastes (same users, items and clusters as ``generate`` with these arguments); for the stream
    simulator. Columns :data:`EVENT_COLUMNS`; ``event_time`` is the time of day on a nominal date."""
    end = last_complete_day()
    start = end - timedelta(days=days - 1)
    catalogue, _ = _make_catalogue(items, seed, popularity_alpha, start, end)
    people, _ = _make_users(users, days, seed, start, catalogue)
    views_rate = events_per_user_day / _EVENTS_PER_VIEW
    purchased = np.empty(0, dtype=np.int64)
    d = days
    while True:
        table, purchased, _ = _day_events(d, start + timedelta(days=d), seed, people, catalogue, views_rate, purchased)
        yield table
        d += 1


@dataclass(frozen=True)
class PlantedTastes:
    """The planted tastes of a generated shop: ``taste[u, k]`` is user ``u``'s share of views in cluster
    ``k`` (rows sum to 1), ``item_cluster[i]`` item ``i``'s cluster, ``activity[u]`` the user's relative
    activity (mean 1); users and items in the order of ``user_ids`` and ``item_ids``."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    item_cluster: np.ndarray
    taste: np.ndarray
    activity: np.ndarray

    def affinity(self, user: int, items: np.ndarray) -> np.ndarray:
        """User ``user``'s affinity for ``items`` (indices): the taste for each item's cluster times the
        number of clusters (1 = an indifferent user's)."""
        return self.taste[user, self.item_cluster[items]] * self.taste.shape[1]


def planted_tastes(
    *, users: int = 2000, items: int = 500, days: int = 60, seed: int = 42, popularity_alpha: float = 0.8
) -> PlantedTastes:
    """The tastes :func:`generate` plants with these arguments (they do not depend on the end date)."""
    end = last_complete_day()
    start = end - timedelta(days=days - 1)
    catalogue, _ = _make_catalogue(items, seed, popularity_alpha, start, end)
    people, _ = _make_users(users, days, seed, start, catalogue)
    n_clusters = catalogue.cluster_share.size
    cdf = people.taste_cdf.reshape(len(people.ids), n_clusters) - np.arange(len(people.ids))[:, None]
    taste = np.diff(cdf, axis=1, prepend=0.0)
    return PlantedTastes(
        np.asarray(people.ids.to_pylist(), dtype=object), np.asarray(catalogue.ids.to_pylist(), dtype=object),
        catalogue.cluster, taste, people.activity,
    )  # fmt: skip


def last_complete_day() -> date:
    """Yesterday in UTC: the latest day whose events all lie in the past."""
    return datetime.now(UTC).date() - timedelta(days=1)


def generate(
    out_dir: Path,
    *,
    users: int = 2000,
    items: int = 500,
    days: int = 60,
    end_date: date | None = None,
    seed: int = 42,
    events_per_user_day: float = 1.5,
    popularity_alpha: float = 0.8,
    clean: bool = True,
    on_day: Callable[[date, int], object] | None = None,
) -> GeneratedSummary:
    """Write ``products.csv``, ``users.csv`` and ``events/YYYY-MM-DD.csv`` (last day ``end_date``).

    ``end_date`` defaults to yesterday (UTC), the last complete day: a day's file holds
    events until 23:59:59, so a file for today would hold events from the future (and the
    marts, stamped with the latest event time, would carry a future ``event_timestamp``).

    ``events_per_user_day`` is the mean number of events (all types) of an average user on a
    day; ``clean`` removes day files of earlier runs outside the new date range.
    """
    if users < 1 or items < 1 or days < 1:
        raise ValueError("users, items and days must be positive")
    out_dir = Path(out_dir)
    end = end_date or last_complete_day()
    start = end - timedelta(days=days - 1)
    events_dir = out_dir / "events"
    events_dir.mkdir(parents=True, exist_ok=True)

    catalogue, products = _make_catalogue(items, seed, popularity_alpha, start, end)
    _write_csv(products, out_dir / "products.csv")
    people, user_columns = _make_users(users, days, seed, start, catalogue)
    _write_csv(user_columns, out_dir / "users.csv")

    views_rate = events_per_user_day / _EVENTS_PER_VIEW
    purchased = np.empty(0, dtype=np.int64)
    totals = np.zeros(3, dtype=np.int64)
    wanted = set()
    for d in range(days):
        day = start + timedelta(days=d)
        table, purchased, counts = _day_events(d, day, seed, people, catalogue, views_rate, purchased)
        name = f"{day.isoformat()}.csv"
        wanted.add(name)
        _write_events(table, events_dir / name)
        totals += counts
        if on_day is not None:
            on_day(day, int(counts.sum()))
    if clean:
        for stale in events_dir.glob("????-??-??.csv"):
            if stale.name not in wanted:
                stale.unlink()
    return GeneratedSummary(
        out_dir=out_dir,
        users=users,
        items=items,
        events=int(totals.sum()),
        views=int(totals[0]),
        carts=int(totals[1]),
        purchases=int(totals[2]),
        event_files=days,
        start_date=start,
        end_date=end,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recomart.datasets.generator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (<landing>/generated)")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--end-date", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: yesterday, UTC)"
    )
    parser.add_argument("--events-per-user-day", type=float, default=1.5)
    args = parser.parse_args(argv)
    summary = generate(
        args.out,
        users=args.users,
        items=args.items,
        days=args.days,
        end_date=args.end_date,
        seed=args.seed,
        events_per_user_day=args.events_per_user_day,
    )
    print(json.dumps(summary.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
