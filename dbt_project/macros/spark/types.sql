{% macro spark__type_double() -%}
    {#- Spark SQL has DOUBLE but no `double precision`, the default__ spelling. -#}
    double
{%- endmacro %}
