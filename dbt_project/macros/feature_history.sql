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
{% macro feature_history_start() -%}
    {{ incremental_first_day('as_of_date', 'feature_history_lookback_days', 'feature_history_from') }}
{%- endmacro %}

{#
    Pre-hook of the feature histories: a table built by the former
    one-snapshot-per-build models has no as_of_date column. Its rows record
    build times, not event days, so they are deleted and the column is added;
    the incremental build then finds no as_of_date and recomputes every day.
#}
{% macro upgrade_feature_history() -%}
    {{ upgrade_to_incremental([['as_of_date', 'date']]) }}
{%- endmacro %}
