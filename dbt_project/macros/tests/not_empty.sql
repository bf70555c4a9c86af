{#
    Fails when the model (optionally filtered by `where` config) has no rows.
    Stops at the first row instead of counting them all: on a view over the
    whole history a count re-reads every event.
#}
{% test not_empty(model) %}

    select 0 as row_count
    where not exists (select from {{ model }})

{% endtest %}
