{#
    The two generic tests we would otherwise take from dbt_utils (packages cannot be installed
    here, and two small tests do not justify vendoring one).
#}

{% test unique_combination_of_columns(model, combination_of_columns) %}
    {#- Fails with one row per duplicated key: the grain of the model is broken. -#}
    select
        {{ combination_of_columns | join(', ') }},
        count(*) as rows_with_this_key
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1
{% endtest %}


{% test expression_is_true(model, expression, column_name=none) %}
    {#- Fails with every row where the invariant `expression` is false (NULL counts as false).
        On a column the expression names the column itself; column_name is accepted, not used. -#}
    select *
    from {{ model }}
    where not coalesce(({{ expression }}), false)
{% endtest %}
