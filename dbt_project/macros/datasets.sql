{#
    A deployment ingests one data set, so only that data set's raw tables exist:
      generated: raw.events, raw.users, raw.products
      uci:       raw.uci_orders, raw.products
    Sources and models of the other data set are disabled through
    `enabled` configs that call these macros (the sources in
    models/staging/__sources.yml repeat the expression, macros are not
    available there), so they are never compiled or tested and no empty
    placeholder relations are created.

    The data set is var('dataset'), else the env var RECOMART_DATASET
    (exported by `recomart env`), else 'generated'.
#}
{% macro recomart_dataset() -%}
    {%- set dataset = (var('dataset', env_var('RECOMART_DATASET', '')) or 'generated') | trim | lower -%}
    {%- if dataset not in ['generated', 'uci'] -%}
        {{ exceptions.raise_compiler_error(
            "var 'dataset' must be 'generated' or 'uci', got '" ~ dataset ~ "'"
        ) }}
    {%- endif -%}
    {{ return(dataset) }}
{%- endmacro %}

{% macro dataset_is(name) -%}
    {{ return(recomart_dataset() == name) }}
{%- endmacro %}
