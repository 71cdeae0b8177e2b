{#
    Data tests sized to the run (BENCHMARKS.md "dbt data tests on incremental runs").

    An incremental run rewrites only the rows of new deliveries (staging) and of the customers they
    touch (the incremental intermediates); every other row is exactly what the last published build
    held, and that build passed every test (publishing waits for the dbt step). So the heavy tests of
    those models check only rows written since the last publish: their `where` config names the
    placeholder __previous_input_seq__, e.g. `_delivery_seq > __previous_input_seq__` on a staged
    fact or `_input_seq > __previous_input_seq__` on an incremental intermediate (both columns hold
    deliveries, macros/incremental.sql).

    The watermark is int_run_parameters.input_seq of the last published build, in the environment
    variable NPS_LINK_TEST_SCOPE_SINCE, which orchestration.lib.dbt.test_scope_env sets only when this run adds deliveries under the same cut-off
    rule and parameters (otherwise rows can change without a newer delivery, and it passes ""). A
    full build tests everything: `--full-refresh`, no previous published build (the var is empty),
    or an engine without incremental models.

    A test scoped this way still holds for the whole table:
    - not_null, accepted_values, expression_is_true are row by row: old rows passed when published
      and are unchanged.
    - unique on the model's key: the new rows are checked among themselves; a new row cannot
      duplicate an old one, because delete+insert on that key deletes every stored row whose key
      the run writes (the model's unique_key is the tested key).
    - relationships: the parents (accounts, customers, currencies) only grow, so an old row's parent
      is still there.
    Tests that must see the whole table (reconciliations, small tables) carry no placeholder.
#}

{% macro previous_input_seq() -%}
    {#- The watermark below which rows were tested when last published, or none for a full-coverage run. -#}
    {#- An environment variable, not a --vars entry: dbt re-parses the whole project whenever --vars
        change, and this one changes every day. It is read only when the SQL runs, never while dbt
        parses: dbt re-parses every file that read a changed env var at parse time, and a file that
        picks its ref() by this value declares both refs itself (`-- depends_on:`), so a new day's
        value costs no parse at all. -#}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set since = env_var('NPS_LINK_TEST_SCOPE_SINCE', '') | string | trim -%}
    {%- if flags.FULL_REFRESH or target.type != 'duckdb' or since == '' -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(since | int) }}
{%- endmacro %}


{% macro get_where_subquery(relation) -%}
    {#-
        dbt's own get_where_subquery (the `where` config of a generic test), plus the placeholder
        __previous_input_seq__ (dbt documents overriding this macro for placeholders in `where`). A
        `where` with the placeholder is a scope filter only: on a full-coverage run the test reads
        the whole relation.
    -#}
    {%- set where = config.get('where', '') -%}
    {%- if where and '__previous_input_seq__' in where -%}
        {%- set since = previous_input_seq() -%}
        {%- if since is none -%}
            {{ return(relation) }}
        {%- endif -%}
        {%- set where = where | replace('__previous_input_seq__', since | string) -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}
