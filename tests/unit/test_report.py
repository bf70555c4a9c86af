"""The report's one-line summaries of a blend's weights and input options."""

from __future__ import annotations

from recomart.report import format_options, format_weights


def test_fitted_weights_show_the_nonzero_components_and_validation_figure() -> None:
    line = format_weights(
        {"weights": {"cf": 0.6, "item_item": 0.4, "content": 0.0}, "fitted": True, "validation_ndcg": 0.43287}
    )
    assert line == "svd 0.60, item_item 0.40 (fitted: validation nDCG@10 0.4329)"


def test_default_weights_say_why() -> None:
    line = format_weights(
        {"weights": {"cf": 0.7, "content": 0.3}, "fitted": False, "reason": "26 validation users < 50: default weights"}
    )
    assert line == "svd 0.70, content 0.30 (default: 26 validation users < 50: default weights)"


def test_options_show_the_chosen_values_and_how_many_candidates_competed() -> None:
    blend = {"options": {"top_n": 10, "prior_days": None}, "candidates": [{}, {}, {}, {}]}
    assert format_options(blend) == "top_n 10, prior_days default (best of 4 candidates on validation)"
    assert format_options({"weights": {"cf": 1.0}}) == "defaults"
