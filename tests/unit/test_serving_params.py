"""Route parameters as one pydantic model (``recomart.serving.params``): values, 422s, OpenAPI."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request

from recomart.serving.params import openapi_parameters, validated
from recomart.serving.schemas import RecommendationsParams, SimilarParams


def _request(path_params: dict[str, str], query: bytes) -> Request:
    return Request(
        {"type": "http", "method": "GET", "path": "/", "query_string": query, "headers": [], "path_params": path_params}
    )


def test_values_come_from_path_and_query_with_repeated_list_parameters() -> None:
    params = validated(RecommendationsParams, _request({"user_id": "u1"}, b"k=3&exclude=a&exclude=b&category=garden"))
    assert (params.user_id, params.k, params.category, params.exclude) == ("u1", 3, "garden", ["a", "b"])
    assert validated(RecommendationsParams, _request({"user_id": "u1"}, b"")).k == 10
    assert validated(SimilarParams, _request({"item_id": "i9"}, b"kind=looks_like")).kind == "looks_like"


@pytest.mark.parametrize(
    ("path", "query", "loc", "message"),
    [
        ({"user_id": "u1"}, b"k=0", ("query", "k"), "greater than or equal to 1"),
        ({"user_id": "u1"}, b"k=ten", ("query", "k"), "valid integer"),
        ({"user_id": "u1"}, b"min_price=cheap", ("query", "min_price"), "valid number"),
        ({"user_id": "x" * 201}, b"", ("path", "user_id"), "at most 200 characters"),
    ],
)
def test_a_failed_check_is_a_validation_error_naming_where(path: dict, query: bytes, loc: tuple, message: str) -> None:
    with pytest.raises(RequestValidationError) as failed:
        validated(RecommendationsParams, _request(path, query))
    [error] = failed.value.errors()
    assert error["loc"] == loc and message in error["msg"]


def test_openapi_parameters_carry_the_models_constraints() -> None:
    parameters = {p["name"]: p for p in openapi_parameters(RecommendationsParams, ("user_id",))["parameters"]}
    assert parameters["user_id"]["in"] == "path" and parameters["user_id"]["required"]
    assert parameters["k"]["in"] == "query" and not parameters["k"]["required"]
    assert (parameters["k"]["schema"]["minimum"], parameters["k"]["schema"]["maximum"]) == (1, 100)
    assert parameters["exclude"]["schema"]["type"] == "array"
