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

{#
    The window of an incremental int_interactions build, read at compile
    time, so the model can bound its reads of raw events with literals (a
    value known only at run time makes the planner assume a third of
    raw.events and read all of it, where the BRIN indexes on event_time and
    _loaded_at read the window's blocks): a dict with
      - first_day: the first event day rebuilt (incremental_first_day);
      - loaded_until: the latest loaded_at built;
      - scan_from: the earliest day to read, first_day or, if earlier, the
        first day of an event of `events` loaded after loaded_until (a late
        file or stream event brings its whole day back).
    The model filters with the same bounds computed at run time; these only
    let the planner skip blocks. None (no literal bounds) for a full build,
    a unit test (`this` is rows given to it), a compile without `events`
    (dbt docs generate on a bare warehouse), or a table that lacks the
    incremental columns (the pre-hook empties it) or holds no row.
#}
{% macro interactions_window(events) -%}
    {%- if not (execute and is_incremental()) or this is string or load_relation(events) is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set names = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
    {%- if 'event_date' not in names or 'loaded_at' not in names or 'built_at' not in names -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set built = run_query(
        'select (' ~ incremental_first_day('event_date', 'interactions_lookback_days', 'interactions_from')
        ~ ')::text, (select max(loaded_at) from ' ~ this ~ ')::text'
    ).rows[0] -%}
    {%- if built[0] is none or built[1] is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set late = run_query(
        "select min((event_time at time zone 'utc')::date)::text from " ~ events
        ~ " where loaded_at > '" ~ built[1] ~ "'::timestamptz"
    ).rows[0][0] -%}
    {{ return({
        'first_day': built[0],
        'loaded_until': built[1],
        'scan_from': [built[0], late] | reject('none') | min,
    }) }}
{%- endmacro %}

{#
    The window of an incremental int_user_items build, read at compile time
    (as a literal, like interactions_window): a dict with
      - built_until: the latest built_at of the table, the start of the last
        invocation that recomputed a pair.
    A pair with an int_interactions row written after built_until (a day
    int_interactions rewrote since: macro interactions_rebuilt_since) is
    recomputed from all its interactions. None (rebuild every pair; the
    pre-hook empty_user_items_for_rebuild empties the table) for a full
    build, a unit test, var('as_of') set or set on the last build
    (built_as_of), a changed var('recency_half_life_days'), a table that lacks
    a state column, or one that holds no row.
#}
{% macro user_items_window() -%}
    {%- if var('as_of') or not execute or this is none or this is string or not is_incremental() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set names = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
    {%- for column in ['last_interaction_at', 'loaded_at', 'half_life_days', 'built_as_of', 'built_at'] -%}
        {%- if column not in names -%}
            {{ return(none) }}
        {%- endif -%}
    {%- endfor -%}
    {%- set built = run_query(
        "select max(built_at)::text,"
        ~ " bool_and(half_life_days = " ~ (var('recency_half_life_days') | float) ~ "::float8"
        ~ " and built_as_of is null) from " ~ this
    ).rows[0] -%}
    {%- if built[0] is none or not built[1] -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return({'built_until': built[0]}) }}
{%- endmacro %}

{#
    Pre-hook of int_user_items: an incremental build without a window
    (user_items_window is None) recomputes every pair, so the rows built
    before are deleted first (a pair may have no interaction up to the new
    as_of).
#}
{% macro empty_user_items_for_rebuild() -%}
    {%- if execute and is_incremental() and user_items_window() is none -%}
        truncate table {{ this }}
    {%- endif -%}
{%- endmacro %}

{#
    The start of this dbt invocation, as a SQL timestamptz: the built_at of
    the rows it writes into int_interactions and the models incremental on
    it (a later invocation starts later).
#}
{% macro build_time() -%}
    '{{ run_started_at.isoformat() }}'::timestamptz
{%- endmacro %}

{#
    The first event day of the int_interactions rows written by an
    invocation after `since` (a SQL timestamptz expression; null: every
    row), as a SQL date expression (null when there is none): where a model
    incremental on int_interactions starts recomputing. int_interactions
    rewrites a day when its events changed (a new day, late or replaced
    events, an event stamped before the last build's latest loaded_at), so
    every change since `since` is on that day or later. Indexed (built_at):
    min(event_date + 0), not min(event_date), so the planner reads the few
    rows written since through that index; for min(event_date) it walked
    the event_date index from the oldest day, filtering every row until the
    first rewritten one (1.6 s at 10M events, all of them before it).
#}
{% macro interactions_rebuilt_since(since) -%}
    (
        select min(rebuilt.event_date + 0)
        from {{ ref('int_interactions') }} as rebuilt
        where rebuilt.built_at > coalesce({{ since }}, '-infinity'::timestamptz)
    )
{%- endmacro %}
