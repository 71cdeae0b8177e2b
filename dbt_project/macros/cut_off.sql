{#
    The as_of cut-off of the fact views (fct_crm_contacts, fct_orders, fct_survey_driver_scores,
    detractor_followups) as a scalar SQL expression.

    On DuckDB the views carry it as a literal timestamp, read from int_run_parameters when the view
    is built (int_run_parameters is upstream of every view that calls this, so `dbt build` has
    already rebuilt it in the same run). With the cut-off as a subquery, `cross join run_parameters
    where occurred_at <= as_of_at`, DuckDB cannot estimate the filtered side (it guesses ~78 of 22.6M
    activities at L) and builds the left join's hash table on the activities instead of
    dim_customers: every query on the view, the grain tests and every analyst's, paid 4-6 s at L
    instead of ~1 s. The literal is what the subquery would return at build time: the views are
    rebuilt on every dbt build, like int_run_parameters, and the published file is a snapshot of one
    build.

    The subquery stays wherever the value cannot be read: at parse time, compile without the table
    (a fresh warehouse), and on other engines (Spark plans the scalar subquery well enough, and its
    builds are compared with DuckDB's by tests/spark).
#}

{% macro as_of_cut_off() -%}
    {{ return(adapter.dispatch('as_of_cut_off')()) }}
{%- endmacro %}


{% macro default__as_of_cut_off() -%}
    {#- ref() outside any branch: dbt records the dependency when it parses the caller. -#}
    (select as_of_at from {{ ref('int_run_parameters') }})
{%- endmacro %}


{% macro duckdb__as_of_cut_off() -%}
    {%- set parameters = ref('int_run_parameters') -%}
    {%- set subquery = '(select as_of_at from ' ~ parameters ~ ')' -%}
    {%- if not execute -%}
        {{ return(subquery) }}
    {%- endif -%}
    {%- set stored = adapter.get_relation(
        database=parameters.database, schema=parameters.schema, identifier=parameters.identifier) -%}
    {%- if stored is none -%}
        {{ return(subquery) }}
    {%- endif -%}
    {%- set rows = run_query('select strftime(as_of_at, \'%Y-%m-%d %H:%M:%S.%f\') as as_of_at from ' ~ parameters).rows -%}
    {%- if rows | length != 1 -%}
        {{ exceptions.raise_compiler_error('int_run_parameters must hold one row, got ' ~ rows | length) }}
    {%- endif -%}
    {%- if rows[0][0] is none -%}
        {#- No event staged yet: no cut-off, so no fact passes (as with the subquery). -#}
        {{ return('cast(null as ' ~ dbt.type_timestamp() ~ ')') }}
    {%- endif -%}
    {{ return("cast('" ~ rows[0][0] ~ "' as " ~ dbt.type_timestamp() ~ ")") }}
{%- endmacro %}
