{#
    Spark versions of the time helpers in ../time.sql. The Spark target runs with
    spark.sql.session.timeZone = UTC (profiles.yml), so a Spark TIMESTAMP holds the same naive UTC
    value the lake and DuckDB hold, and nothing below depends on the machine's zone.
#}

{% macro spark__to_reporting_tz(column) -%}
    {#- from_utc_timestamp reads the value as UTC and returns the wall time in the zone (tz database,
        daylight saving included); only zones without one fixed offset reach this branch. -#}
    from_utc_timestamp({{ column }}, '{{ var("reporting_tz") }}')
{%- endmacro %}


{% macro spark__from_reporting_tz(column) -%}
    to_utc_timestamp({{ column }}, '{{ var("reporting_tz") }}')
{%- endmacro %}


{% macro spark__seconds_between(start_at, end_at) -%}
    {#- Whole microseconds first, as on DuckDB, then one division in DOUBLE: Spark would otherwise
        divide a BIGINT by the literal as DECIMAL and round to fewer digits than DuckDB keeps. -#}
    (cast(unix_micros(cast({{ end_at }} as timestamp)) - unix_micros(cast({{ start_at }} as timestamp)) as double)
        / cast(1000000 as double))
{%- endmacro %}


{% macro spark__month_series(start_month, end_month) -%}
    {#- sequence() fails on start > end where DuckDB's generate_series yields nothing; the guard gives
        explode(NULL), i.e. no rows, in that case and when either bound is NULL. -#}
    select explode(
        case
            when cast({{ start_month }} as date) <= cast({{ end_month }} as date)
                then sequence(cast({{ start_month }} as date), cast({{ end_month }} as date), interval 1 month)
        end
    ) as month
{%- endmacro %}
