{% macro type_double() -%}
    {#- A 64-bit float. dbt.type_float() renders `float`, which DuckDB reads as a 32-bit REAL:
        too coarse for fractional days and money. -#}
    {{ return(adapter.dispatch('type_double', 'nps_link')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}

{% macro duckdb__type_double() -%}
    double
{%- endmacro %}
