{#
    The NPS rules of DESIGN.md "Metric definitions", written once. Every model that buckets
    scores or computes NPS calls these, so a rule cannot drift between tables.
#}

{% macro nps_category(score) -%}
    case
        when {{ score }} >= 9 then 'promoter'
        when {{ score }} >= 7 then 'passive'
        when {{ score }} >= 0 then 'detractor'
    end
{%- endmacro %}


{% macro nps(promoters, detractors, responses) -%}
    {#- 100 x (promoters - detractors) / responses; NULL for an empty group. A DOUBLE on every engine:
        with the literal 100.0, Spark would compute a DECIMAL(38,14) where DuckDB gives a DOUBLE. -#}
    case
        when {{ responses }} > 0
            then cast(100 as {{ type_double() }}) * ({{ promoters }} - {{ detractors }}) / {{ responses }}
    end
{%- endmacro %}


{% macro nps_moe95(promoters, detractors, responses) -%}
    {#- 1.96 x 100 x sqrt((p + d - (p - d)^2) / n) with p, d the promoter and detractor shares;
        NULL when n < 2, where the Wald interval says nothing. -#}
    case
        when {{ responses }} >= 2
            then 1.96 * 100.0 * sqrt(
                (
                    cast({{ promoters }} as {{ type_double() }}) / {{ responses }}
                    + cast({{ detractors }} as {{ type_double() }}) / {{ responses }}
                    - power(
                        cast({{ promoters }} as {{ type_double() }}) / {{ responses }}
                        - cast({{ detractors }} as {{ type_double() }}) / {{ responses }},
                        2
                    )
                ) / {{ responses }}
            )
    end
{%- endmacro %}
