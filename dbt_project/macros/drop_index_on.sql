{#
    Post-hook: drop the model's indexes whose key is exactly `columns`, in
    that order: an index an earlier version of the model created (dbt's
    `indexes` config only creates indexes with a new table, and never
    drops one). A no-op on a table without such an index.
#}
{% macro drop_index_on(columns) -%}
    do $$
    declare
        stale regclass;
    begin
        for stale in
            select index_entry.indexrelid::regclass
            from pg_index as index_entry
            where
                index_entry.indrelid = '{{ this }}'::regclass
                and (
                    select array_agg(key_column.attname order by key_part.position)
                    from unnest(index_entry.indkey::int2 []) with ordinality as key_part (attnum, position)
                    inner join pg_attribute as key_column
                        on key_column.attrelid = index_entry.indrelid and key_column.attnum = key_part.attnum
                ) = array[
                    {%- for column in columns %}'{{ column }}'{{ ', ' if not loop.last }}{% endfor -%}
                ]::name[]
        loop
            execute format('drop index %s', stale);
        end loop;
    end
    $$
{%- endmacro %}
