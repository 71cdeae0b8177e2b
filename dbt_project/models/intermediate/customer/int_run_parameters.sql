{%- set as_of_sql = as_of_expression() -%}

with

activities as (

    select max(occurred_at) as latest_at, max(_delivery_seq) as latest_seq from {{ ref('stg_crm__activities') }}

),

responses as (

    select max(responded_at) as latest_at, max(_delivery_seq) as latest_seq from {{ ref('stg_survey__responses') }}

),

orders as (

    select max(ordered_at) as latest_at, max(_delivery_seq) as latest_seq from {{ ref('stg_billing__orders') }}

),

accounts as (

    select max(_delivery_seq) as latest_seq from {{ ref('stg_crm__accounts') }}

),

-- Reps count toward the watermark too: a roster delivered after the last fact must not look new to
-- every later run (dim_customers reads the reps delivered since).
reps as (

    select max(_delivery_seq) as latest_seq from {{ ref('stg_crm__reps') }}

),

latest_events as (

    select latest_at, latest_seq from activities
    union all
    select latest_at, latest_seq from responses
    union all
    select latest_at, latest_seq from orders
    union all
    select cast(null as {{ dbt.type_timestamp() }}) as latest_at, latest_seq from accounts
    union all
    select cast(null as {{ dbt.type_timestamp() }}) as latest_at, latest_seq from reps

),

latest_event as (

    select max(latest_at) as latest_event_at, max(latest_seq) as input_seq from latest_events

)

select
    {% if as_of_sql is none -%}
    latest_event_at as as_of_at,
    {%- else -%}
    {{ as_of_sql }} as as_of_at,
    {%- endif %}
    latest_event_at,
    -- The newest delivery staged: the incremental models' watermark (macros/incremental.sql).
    input_seq,
    '{{ var("reporting_tz") }}' as reporting_tz,
    '{{ var("reporting_currency") }}' as reporting_currency,
    cast({{ var("contact_window_days") }} as {{ dbt.type_int() }}) as contact_window_days,
    cast({{ var("repeat_window_days") }} as {{ dbt.type_int() }}) as repeat_window_days,
    cast({{ var("followup_window_days") }} as {{ dbt.type_int() }}) as followup_window_days,
    cast({{ var("revenue_window_days") }} as {{ dbt.type_int() }}) as revenue_window_days
from latest_event
