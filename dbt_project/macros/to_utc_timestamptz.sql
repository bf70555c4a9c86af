{#
    A timestamptz for `column_name` of `relation` that does not depend on the
    reader's session time zone (staging models are views, evaluated by whoever
    queries them):
      - a timestamptz column is used as it is;
      - a timestamp without time zone (or text) is read as wall-clock time in
        `source_timezone`.
    The column type is looked up when the model runs; at parse time the
    generic form is returned.
#}
{% macro to_utc_timestamptz(relation, column_name, source_timezone='UTC') -%}
    {%- set ns = namespace(data_type=none) -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- if column.name | lower == column_name | lower -%}
                {%- set ns.data_type = column.data_type | lower -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if ns.data_type == 'timestamp with time zone' -%}
        {{ column_name }}
    {%- else -%}
        ({{ column_name }}::timestamp at time zone '{{ source_timezone }}')
    {%- endif -%}
{%- endmacro %}
