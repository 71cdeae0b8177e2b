{{
    config(
        materialized=incremental_materialization(),
        unique_key='response_id',
        incremental_strategy='delete+insert',
    )
}}
{%- set window_days = var('contact_window_days') | int -%}

with

responses as (

    select response_id, customer_id, responded_at from {{ ref('stg_survey__responses') }}
    {%- if is_incremental() %}
    -- A response's exposure reads only its customer's activities and account: recompute the responses
    -- of customers with a new delivery, or all of them when a window var changed.
    where customer_id in ({{ customers_delivered_since(delivery_watermark(), ['activities', 'responses', 'accounts']) }})
        or exists (select 1 from {{ this }} where _parameters <> {{ run_parameters_key() }})
    {%- endif %}

),

activities as (

    select customer_id, direction, occurred_at from {{ ref('stg_crm__activities') }}

),

accounts as (

    select customer_id, created_at from {{ ref('stg_crm__accounts') }}

),

run_parameters as (

    select input_seq from {{ ref('int_run_parameters') }}

),

-- An equi-join on customer_id with the window as range predicates: the engine hashes on the
-- customer and only compares that customer's activities, never a correlated subquery per response.
contacts_in_window as (

    select
        responses.response_id,
        cast(sum(case when activities.direction = 'outbound' then 1 else 0 end) as {{ dbt.type_bigint() }}) as contacts_before,
        cast(sum(case when activities.direction = 'inbound' then 1 else 0 end) as {{ dbt.type_bigint() }}) as inbound_before
    from responses
    inner join activities
        on activities.customer_id = responses.customer_id
        and activities.occurred_at >= {{ dbt.dateadd('day', -window_days, 'responses.responded_at') }}
        -- The response instant itself is excluded: a contact logged at that moment cannot have shaped it.
        and activities.occurred_at < responses.responded_at
    group by responses.response_id

),

exposure as (

    select
        responses.response_id,
        responses.customer_id,
        responses.responded_at,
        coalesce(contacts_in_window.contacts_before, 0) as contacts_before,
        coalesce(contacts_in_window.inbound_before, 0) as inbound_before,
        -- A young account cannot have been contacted for the whole window, so its rate is taken over
        -- the days it existed; at least one day, so a same-day response does not explode the rate.
        -- An orphan (no account delivered) has no created_at: the full window is assumed.
        case
            when accounts.created_at is null then cast({{ window_days }} as {{ type_double() }})
            else greatest(
                cast(1 as {{ type_double() }}),
                least(
                    cast({{ window_days }} as {{ type_double() }}),
                    {{ days_between('accounts.created_at', 'responses.responded_at') }}
                )
            )
        end as exposure_days
    from responses
    left join contacts_in_window
        on contacts_in_window.response_id = responses.response_id
    left join accounts
        on accounts.customer_id = responses.customer_id

)

select
    response_id,
    customer_id,
    responded_at,
    contacts_before,
    inbound_before,
    exposure_days,
    contacts_before / (exposure_days / 30.0) as contacts_per_month,
    run_parameters.input_seq as _input_seq,
    {{ run_parameters_key() }} as _parameters
from exposure
cross join run_parameters
