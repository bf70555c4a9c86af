{# Fails when the model (optionally filtered by `where` config) has no rows. #}
{% test not_empty(model) %}

    select row_count
    from (select count(*) as row_count from {{ model }}) as counted
    where row_count = 0

{% endtest %}
