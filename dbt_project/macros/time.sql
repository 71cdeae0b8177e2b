{#
    Time helpers whose SQL differs between engines. Every timestamp in the warehouse is naive UTC;
    these macros are the only places that know otherwise.
#}

{% macro to_reporting_tz(column) -%}
    {#-
        A naive UTC timestamp as wall time in the reporting time zone. Where the zone's offset has
        been constant over the whole range events can have (Asia/Tokyo since 1951), this is plain
        arithmetic, the same on every engine and several times faster than a time-zone lookup per
        row; anything outside that range, and every zone with daylight saving, goes through the
        engine's time-zone conversion.
    -#}
    {%- set offset_minutes = fixed_utc_offset_minutes(var('reporting_tz')) -%}
    {%- if offset_minutes is none -%}
        {{ adapter.dispatch('to_reporting_tz', 'nps_link')(column) }}
    {%- else -%}
        case
            when {{ column }} >= cast('{{ fixed_offset_range()[0] }}' as {{ dbt.type_timestamp() }})
                and {{ column }} < cast('{{ fixed_offset_range()[1] }}' as {{ dbt.type_timestamp() }})
                then {{ dbt.dateadd('minute', offset_minutes, column) }}
            else {{ adapter.dispatch('to_reporting_tz', 'nps_link')(column) }}
        end
    {%- endif -%}
{%- endmacro %}

{% macro default__to_reporting_tz(column) -%}
    (({{ column }}) at time zone 'UTC' at time zone '{{ var("reporting_tz") }}')
{%- endmacro %}

{% macro duckdb__to_reporting_tz(column) -%}
    {#- timezone(zone, naive) reads the value as wall time in `zone` and returns an instant;
        timezone(zone, instant) returns the wall time there. Neither depends on the session zone. -#}
    timezone('{{ var("reporting_tz") }}', timezone('UTC', {{ column }}))
{%- endmacro %}


{% macro fixed_offset_range() -%}
    {#- The years over which a zone must keep one UTC offset for to_reporting_tz's arithmetic path. -#}
    {{ return(['1990-01-01', '2050-01-01']) }}
{%- endmacro %}


{% macro fixed_utc_offset_minutes(tz_name) -%}
    {#-
        The zone's UTC offset in minutes if it is the same on the 1st and 15th of every month in
        fixed_offset_range() (no daylight saving, no change of standard time), else none. Read at
        compile time from the tz database dbt ships (pytz). Sampling twice a month catches every
        daylight-saving period, which lasts weeks, and every permanent change.
    -#}
    {#- Remembered per dbt process in dbt's graph dict (one object for every node): sampling costs
        a quarter of a second and every reporting_month() of every model asks again. -#}
    {%- set cache_key = 'nps_link_fixed_utc_offset_minutes:' ~ tz_name -%}
    {%- if graph is mapping and cache_key in graph -%}
        {{ return(graph[cache_key]) }}
    {%- endif -%}
    {%- set zone = modules.pytz.timezone(tz_name) -%}
    {%- set first_year = fixed_offset_range()[0][:4] | int -%}
    {%- set last_year = fixed_offset_range()[1][:4] | int -%}
    {%- set offsets = [] -%}
    {%- for year in range(first_year, last_year) -%}
        {%- for month in range(1, 13) -%}
            {%- for day in [1, 15] -%}
                {%- set offset = zone.utcoffset(modules.datetime.datetime(year, month, day, 12)) -%}
                {%- set minutes = (offset.total_seconds() // 60) | int -%}
                {%- if minutes not in offsets -%}
                    {%- do offsets.append(minutes) -%}
                {%- endif -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- set result = offsets[0] if offsets | length == 1 else none -%}
    {%- if graph is mapping -%}
        {%- do graph.update({cache_key: result}) -%}
    {%- endif -%}
    {{ return(result) }}
{%- endmacro %}


{% macro from_reporting_tz(column) -%}
    {{ return(adapter.dispatch('from_reporting_tz', 'nps_link')(column)) }}
{%- endmacro %}

{% macro default__from_reporting_tz(column) -%}
    (({{ column }}) at time zone '{{ var("reporting_tz") }}' at time zone 'UTC')
{%- endmacro %}

{% macro duckdb__from_reporting_tz(column) -%}
    timezone('UTC', timezone('{{ var("reporting_tz") }}', {{ column }}))
{%- endmacro %}


{% macro reporting_month(column) -%}
    {#- The month a UTC instant falls in, seen from the reporting time zone, as its first day. -#}
    cast({{ dbt.date_trunc('month', to_reporting_tz(column)) }} as date)
{%- endmacro %}


{% macro seconds_between(start_at, end_at) -%}
    {{ return(adapter.dispatch('seconds_between', 'nps_link')(start_at, end_at)) }}
{%- endmacro %}

{% macro default__seconds_between(start_at, end_at) -%}
    extract(epoch from (({{ end_at }}) - ({{ start_at }})))
{%- endmacro %}

{% macro duckdb__seconds_between(start_at, end_at) -%}
    {#- Whole microseconds first, so the result is exact before the one division. -#}
    ((epoch_us({{ end_at }}) - epoch_us({{ start_at }})) / 1000000.0)
{%- endmacro %}


{% macro days_between(start_at, end_at) -%}
    {#- Elapsed time as an exact fractional number of days (DESIGN.md exposure_days, tenure). -#}
    ({{ seconds_between(start_at, end_at) }} / 86400.0)
{%- endmacro %}


{% macro month_series(start_month, end_month) -%}
    {{ return(adapter.dispatch('month_series', 'nps_link')(start_month, end_month)) }}
{%- endmacro %}

{% macro default__month_series(start_month, end_month) -%}
    select cast(generate_series(cast({{ start_month }} as date), cast({{ end_month }} as date), interval '1 month') as date) as month
{%- endmacro %}

{% macro duckdb__month_series(start_month, end_month) -%}
    {#- A select of one DATE column `month`: every first-of-month from start_month to end_month.
        The scalar generate_series + unnest accepts subqueries as bounds; the table function does not. -#}
    select cast(unnest(generate_series(cast({{ start_month }} as date), cast({{ end_month }} as date), interval 1 month)) as date) as month
{%- endmacro %}


{% macro as_of_expression() -%}
    {#-
        The SQL of the `as_of` var as a naive UTC timestamp, or none when the var is empty.
        A bare date is accepted too (someone running dbt by hand) and means, as in DESIGN.md, the end
        of that day (23:59:59) in the reporting time zone. Anything else is refused rather than
        guessed, because a wrong cut-off silently changes every censored metric.
    -#}
    {%- set raw = (var('as_of', '') or '') | string | trim -%}
    {%- if raw == '' -%}
        {{ return(none) }}
    {%- elif modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', raw) -%}
        {{ return(from_reporting_tz("cast('" ~ raw ~ " 23:59:59' as " ~ dbt.type_timestamp() ~ ")")) }}
    {%- elif modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,6})?)?', raw) -%}
        {{ return("cast('" ~ raw | replace('T', ' ') ~ "' as " ~ dbt.type_timestamp() ~ ")") }}
    {%- else -%}
        {{ exceptions.raise_compiler_error("var as_of must be '' or a naive UTC timestamp 'YYYY-MM-DD HH:MM:SS' (or a date), got: " ~ raw) }}
    {%- endif -%}
{%- endmacro %}
