{#
    The two generic tests we would otherwise take from dbt_utils (packages cannot be installed
    here, and two small tests do not justify vendoring one), and dbt's unique test made cheap on
    DuckDB.
#}

{% test unique_combination_of_columns(model, combination_of_columns) %}
    {#- Fails with one row per duplicated key: the grain of the model is broken. -#}
    {%- set key = combination_of_columns | join(', ') %}
    select
        {{ key }},
        count(*) as rows_with_this_key
    from {{ model }}
    {{ only_rows_with_a_repeated_hash(model, key) }}
    group by {{ key }}
    having count(*) > 1
{% endtest %}


{% test expression_is_true(model, expression, column_name=none) %}
    {#- Fails with every row where the invariant `expression` is false (NULL counts as false).
        On a column the expression names the column itself; column_name is accepted, not used. -#}
    select *
    from {{ model }}
    where not coalesce(({{ expression }}), false)
{% endtest %}


{% macro duckdb__test_unique(model, column_name) %}
    {#- dbt's own unique test (same failing rows, same columns), with a cheap pass first on DuckDB:
        a sort of the keys' 64-bit hashes finds the few keys that may repeat, and only those are
        grouped exactly. Grouping every string key of a large table instead is most of a grain
        test's cost (the staged activities and the contacts view: 4-7 s each at L). -#}
    select
        {{ column_name }} as unique_field,
        count(*) as n_records
    from {{ model }}
    {{ only_rows_with_a_repeated_hash(model, column_name, not_null=true) }}
    group by {{ column_name }}
    having count(*) > 1
{% endmacro %}


{% macro only_rows_with_a_repeated_hash(model, key, not_null=false) -%}
    {#- A `where` clause keeping the rows of `model` whose `key` (a column or a comma-separated list)
        may occur more than once, for a grain test's exact `group by` to read instead of every row:
        keys with unequal hashes differ, so no duplicate is lost. `not_null` drops rows whose (single)
        key is NULL, as dbt's unique test does. -#}
    {{- return(adapter.dispatch('only_rows_with_a_repeated_hash', 'nps_link')(model, key, not_null)) }}
{%- endmacro %}

{% macro default__only_rows_with_a_repeated_hash(model, key, not_null) -%}
    {#- Every row: elsewhere the exact grouping is the cheap way. -#}
    {%- if not_null %}
    where {{ key }} is not null
    {%- endif %}
{%- endmacro %}

{% macro duckdb__only_rows_with_a_repeated_hash(model, key, not_null) -%}
    {#- DuckDB's 64-bit hashes sort cheaply (repeated_key_hashes). -#}
    where {{ key_hash(key) }} in (
        {{ repeated_key_hashes('select ' ~ key ~ ' from ' ~ model ~ (' where ' ~ key ~ ' is not null' if not_null else ''), key) }}
    )
    {%- if not_null %}
        and {{ key }} is not null
    {%- endif %}
{%- endmacro %}
