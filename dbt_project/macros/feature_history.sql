{#
    The incremental window of the as-of feature histories
    (user_features_history, item_features_history): the first as_of_date a
    build recomputes, as a SQL date expression.
      - full build (first run, --full-refresh): null, i.e. every day;
      - var('feature_history_from') set: that day (a backfill after late data);
      - else the latest as_of_date already built minus
        var('feature_history_lookback_days'), so late events of the last days
        and the last, possibly partial, day are recomputed.
    Each day's rows only depend on the events up to its end, so recomputing
    a day gives the rows a full build gives it.
#}
{% macro feature_history_start(day_column='as_of_date') -%}
    {{ incremental_first_day(day_column, 'feature_history_lookback_days', 'feature_history_from') }}
{%- endmacro %}

{#
    Pre-hook of the feature histories: a table built before lacks a column
    of their incremental state (as_of_date of the former
    one-snapshot-per-build models, revenue_to_date and the model's
    `state_columns`, a list of [name, type], of the models that recomputed
    the whole history). Its rows cannot be continued from, so they are
    deleted and the columns added; the incremental build then finds no day
    built and recomputes every day.
#}
{% macro upgrade_feature_history(state_columns=[]) -%}
    {{ upgrade_to_incremental([['as_of_date', 'date'], ['revenue_to_date', 'numeric']] + state_columns) }}
{%- endmacro %}

{#
    The first as_of_date a feature-history build recomputes, as a date
    literal rendered at compile time (a value known only at run time makes
    the planner assume a third of int_interactions and scan all of it):
    '-infinity' for a full build, and for a table that lacks one of
    `state_columns` (its pre-hook empties it) or holds no day. Else, for
    the generated data set, the day after the latest built one (days
    without events have rows too: a popularity window ends, a user signs
    up) or, if earlier, the first event day of the int_interactions rows
    written after the latest built_at of the table (macro
    interactions_rebuilt_since: late events however old, and the days of
    a build that failed before this model); for uci (int_interactions is
    rebuilt whole) and with var('feature_history_from'), the day of
    feature_history_start. `day_column` is the model's day key (the data
    report's aggregates key on activity_date).
#}
{% macro feature_history_window_start(state_columns, day_column='as_of_date') -%}
    {%- set start = [] -%}
    {%- if execute and is_incremental() -%}
        {%- set names = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
        {%- set missing = [] -%}
        {%- for column in state_columns if column not in names -%}
            {%- do missing.append(column) -%}
        {%- endfor -%}
        {%- if not missing -%}
            {%- if dataset_is('generated') and 'built_at' in state_columns and not var('feature_history_from', '') -%}
                {%- set first = 'least(' ~ interactions_rebuilt_since('(select max(built_at) from ' ~ this ~ ')')
                    ~ ', (select max(' ~ day_column ~ ') + 1 from ' ~ this ~ '))' -%}
            {%- else -%}
                {%- set first = feature_history_start(day_column) -%}
            {%- endif -%}
            {%- set day = run_query('select (' ~ first ~ ')::text').columns[0].values()[0] -%}
            {%- if day -%}
                {%- do start.append(day) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endif -%}
    '{{ start[0] if start else "-infinity" }}'::date
{%- endmacro %}

{#
    Post-hook: an index on `column` of the model, created once, after the
    first build's rows (dbt's `indexes` config would create it only with a
    new table). The day-keyed histories index built_at, which the tests of
    the rows a build wrote (var tests_of_built_rows) and the window start's
    max(built_at) read; int_user_items indexes loaded_at, which the tests of
    the pairs loaded since the last build (var tests_of_new_rows) read.
#}
{% macro column_index(column) -%}
    create index if not exists {{ adapter.quote(this.identifier ~ '_' ~ column) }} on {{ this }} ({{ column }})
{%- endmacro %}

{#
    `cross join lateral (...) as latest_row`: the latest row of the history
    relation `history` whose `key` equals `entity`.`key`, up to the end of
    as_of's day (the CTE `as_of` with its `last_date`), one probe of the
    history's (key, event_timestamp) index per entity; an entity without one
    drops out of the join.
#}
{% macro cross_join_latest_history_row(history, key, entity) -%}
    cross join lateral (
        select history.*
        from {{ history }} as history
        where
            history.{{ key }} = {{ entity }}.{{ key }}
            and history.event_timestamp <= (as_of.last_date + 1)::timestamp at time zone 'utc'
        order by history.event_timestamp desc
        limit 1
    ) as latest_row
{%- endmacro %}

{#
    The body of the recursive CTE `cte` (`cte (column) as (...)`): the
    distinct values of `column` in `relation` and a final null, one probe of
    an index on `column` each (a loose index scan: Postgres 15 has no skip
    scan, and a distinct over the table would read every row).
#}
{% macro loose_index_scan(relation, column, cte) -%}
    (
        select scanned.{{ column }}
        from {{ relation }} as scanned
        order by scanned.{{ column }} asc
        limit 1
    )
    union all
    select (
        select scanned.{{ column }}
        from {{ relation }} as scanned
        where scanned.{{ column }} > {{ cte }}.{{ column }}
        order by scanned.{{ column }} asc
        limit 1
    )
    from {{ cte }}
    where {{ cte }}.{{ column }} is not null
{%- endmacro %}
