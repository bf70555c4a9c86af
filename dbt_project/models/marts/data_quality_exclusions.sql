{#
    How many UCI order lines each cleaning rule removed (first matching rule
    wins, in the order of macro uci_exclusion_rules), plus the lines kept.
    Rules that removed nothing are listed with 0.
#}
{{ config(enabled=dataset_is('uci')) }}

{%- set rules = uci_exclusion_rules() %}

with

classified as (

    select exclusion_reason
    from {{ ref('int_uci_order_lines_classified') }}

),

rules as (

    select
        rule_list.rule_order,
        rule_list.rule_name,
        rule_list.description

    from (
        values
        {%- for rule in rules %}
        ({{ loop.index }}, '{{ rule.rule }}', '{{ rule.description | replace("'", "''") }}'),
        {%- endfor %}
        ({{ rules | length + 1 }}, 'kept', 'Lines that pass every rule.')
    ) as rule_list (rule_order, rule_name, description)

),

counts as (

    select
        coalesce(exclusion_reason, 'kept') as rule_name,
        count(*) as row_count

    from classified
    group by coalesce(exclusion_reason, 'kept')

),

totals as (

    select count(*) as total_rows from classified

),

report as (

    select
        rules.rule_order,
        rules.rule_name,
        rules.description,
        coalesce(counts.row_count, 0)::bigint as row_count,
        round(
            100.0 * coalesce(counts.row_count, 0) / nullif(totals.total_rows, 0), 3
        )::float8 as pct_of_source_rows

    from rules
    cross join totals
    left join counts on rules.rule_name = counts.rule_name

)

select * from report
