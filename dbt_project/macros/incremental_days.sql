{#
    The incremental window of a model keyed on a day column (delete+insert
    by day): the first day a build recomputes, as a SQL date expression.
      - full build (first run, --full-refresh): null, i.e. every day;
      - var(from_var) set: that day (a backfill after late data);
      - else the latest day already built minus var(lookback_var), so the
        last, possibly partial, day and late events of the days before it
        are recomputed.
#}
{% macro incremental_first_day(day_column, lookback_var, from_var) -%}
    {%- if not is_incremental() -%}
        null::date
    {%- elif var(from_var, '') -%}
        '{{ var(from_var) }}'::date
    {%- else -%}
        (
            select max({{ day_column }}) - {{ var(lookback_var) | int }}
            from {{ this }}
        )
    {%- endif -%}
{%- endmacro %}

{#
    Pre-hook of a model that became incremental by day: a table built
    before has none of `columns` (a list of [name, type]). Its rows cannot
    be replaced day by day, so they are deleted and the columns added; the
    incremental build then finds no day built and recomputes every day.
#}
{% macro upgrade_to_incremental(columns) -%}
    {%- if execute and is_incremental() -%}
        {%- set names = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
        {%- set missing = [] -%}
        {%- for column in columns if column[0] not in names -%}
            {%- do missing.append(column) -%}
        {%- endfor -%}
        {%- if missing -%}
            truncate table {{ this }};
            {%- for column in missing %}
            alter table {{ this }} add column {{ column[0] }} {{ column[1] }};
            {%- endfor %}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
