{#
    Fails for every row whose `column_name` lies outside [min_value, max_value]
    (either bound optional; `inclusive: false` makes both bounds strict).
    Nulls are not checked here: combine with not_null where needed.
#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
    {%- if min_value is none and max_value is none -%}
        {{ exceptions.raise_compiler_error("accepted_range needs min_value or max_value") }}
    {%- endif -%}
    {%- set lower_op = '<' if inclusive else '<=' -%}
    {%- set upper_op = '>' if inclusive else '>=' %}

    select {{ column_name }} as out_of_range_value
    from {{ model }}
    where
        {%- if min_value is not none %}
            {{ column_name }} {{ lower_op }} {{ min_value }}
        {%- endif %}
        {%- if min_value is not none and max_value is not none %} or {% endif %}
        {%- if max_value is not none %}
            {{ column_name }} {{ upper_op }} {{ max_value }}
        {%- endif %}
{% endtest %}
