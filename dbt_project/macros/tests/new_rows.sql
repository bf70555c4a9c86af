{#
    Data tests of the rows new since the last build. A daily `dbt build`
    (not --full-refresh) tests, of the event-grain models named in
    var('tests_of_new_rows'), only the rows loaded (loaded_at) after the
    latest loaded_at of int_interactions at the end of the last successful
    whole-project build: the rows it did not build and test yet (the same
    watermark as int_interactions' own window). A `unique` or
    `unique_combination_of_columns` test keeps its meaning: it groups every
    row that shares a key with a new row, so a new event that repeats an old
    id still fails it. `not_empty` always sees every row. `dbt test`, a full
    refresh and a first build test every row.
    The day-keyed models named in var('tests_of_built_rows') (the feature
    histories, which recompute their window's days) are tested the same
    way on their rows written (built_at) after the start of that last
    successful build.

    The watermarks are kept in ops.dbt_last_build (warehouse migrations 0016
    and 0017; macro record_successful_build, an on-run-end hook); a build that fails
    keeps the previous one, so its rows are tested again. A warehouse
    without that table (no migration) tests every row.
#}

{#
    Replaces dbt's get_where_subquery (the relation a generic test reads):
    the test's own `where` config, and the new-rows filter above.
#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- if config.get('where', '') -%}
        {%- do conditions.append('(' ~ config.get('where') ~ ')') -%}
    {%- endif -%}
    {%- set new_rows = new_rows_condition(relation) -%}
    {%- if new_rows -%}
        {%- do conditions.append(new_rows) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{#
    The SQL condition that keeps the rows of `relation` a test of the running
    build needs (none: every row).
#}
{% macro new_rows_condition(relation) -%}
    {%- set test = model.get('test_metadata') or {} -%}
    {%- set watermarks = {'loaded_at': 'loaded_until', 'built_at': 'built_until'} -%}
    {%- if relation.identifier in var('tests_of_new_rows') -%}
        {%- set column = 'loaded_at' -%}
    {%- elif relation.identifier in var('tests_of_built_rows') -%}
        {%- set column = 'built_at' -%}
    {%- else -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- set since = new_rows_since(watermarks[column]) if test.get('name') != 'not_empty' else none -%}
    {%- if since is none -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- set newer = column ~ " > '" ~ since ~ "'::timestamptz" -%}
    {%- set keys = {
        'unique': [model.get('column_name')],
        'unique_combination_of_columns': (test.get('kwargs') or {}).get('combination_of_columns'),
    }.get(test.get('name')) -%}
    {%- if keys -%}
        {%- set key = '(' ~ keys | join(', ') ~ ')' -%}
        {%- do return(key ~ ' in (select ' ~ keys | join(', ') ~ ' from ' ~ relation ~ ' where ' ~ newer ~ ')') -%}
    {%- endif -%}
    {%- do return(newer) -%}
{%- endmacro %}

{#
    The watermark (`watermark`: loaded_until or built_until) after which
    the running `dbt build` tests rows (text, UTC), or none to test every
    row: not a build, a full refresh, or no successful build recorded.
#}
{% macro new_rows_since(watermark) -%}
    {%- if not execute or flags.WHICH != 'build' or flags.FULL_REFRESH -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- if last_build_log() is none -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- set found = run_query(
        "select " ~ watermark ~ "::text from ops.dbt_last_build where project = '" ~ project_name ~ "'"
    ) -%}
    {%- do return(found.rows[0][0] if found.rows else none) -%}
{%- endmacro %}

{#
    on-run-end hook: after a `dbt build` of the whole project (no --select
    or --exclude) in which every node succeeded, record the latest loaded_at
    of int_interactions and the build's start (the built_at it stamped):
    the rows this build built and tested.
#}
{% macro record_successful_build(results) -%}
    {%- if not execute or flags.WHICH != 'build' -%}
        {%- do return('') -%}
    {%- endif -%}
    {%- set failed = results | rejectattr('status', 'in', ['success', 'pass', 'warn', 'skipped']) | list -%}
    {%- set selected = invocation_args_dict.get('select') or invocation_args_dict.get('exclude') -%}
    {%- set node = graph.nodes.get('model.' ~ project_name ~ '.int_interactions') -%}
    {%- set log = last_build_log() -%}
    {%- if not selected and not failed and node and log is not none -%}
        insert into ops.dbt_last_build (project, loaded_until, invocation_id, built_until)
        select
            '{{ project_name }}',
            max(loaded_at),
            '{{ invocation_id }}',
            {{ build_time() }}
        from {{ adapter.quote(node.schema) }}.{{ adapter.quote(node.alias) }}
        on conflict (project) do update
        set
            loaded_until = excluded.loaded_until,
            invocation_id = excluded.invocation_id,
            built_until = excluded.built_until;
    {%- endif -%}
{%- endmacro %}

{# The relation ops.dbt_last_build (warehouse migration 0016), or none. #}
{% macro last_build_log() -%}
    {%- do return(adapter.get_relation(database=target.database, schema='ops', identifier='dbt_last_build')) -%}
{%- endmacro %}
