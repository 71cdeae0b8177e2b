{#
    Replaces dbt-spark's own spark__dateadd for this project (a root-project macro wins dbt's
    dispatch for the `dbt` namespace). Theirs goes through to_unix_timestamp, which drops the
    microseconds of every timestamp it moves, and wraps the input in assert_not_null, which fails a
    whole query on one NULL; DuckDB keeps both, and the comparison with DuckDB must be exact.
#}

{% macro spark__dateadd(datepart, interval, from_date_or_timestamp) -%}
    {#- timestampadd keeps microseconds and passes NULL through; with the session zone at UTC a day
        is always 86,400 s, as on DuckDB's naive TIMESTAMP. -#}
    timestampadd({{ datepart | upper }}, {{ interval }}, {{ from_date_or_timestamp }})
{%- endmacro %}
