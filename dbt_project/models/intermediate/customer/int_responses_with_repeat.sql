{{
    config(
        materialized=incremental_materialization(),
        unique_key='response_id',
        incremental_strategy='delete+insert',
    )
}}
{%- set repeat_days = var('repeat_window_days') | int -%}
{%- set revenue_days = var('revenue_window_days') | int -%}
{%- set reach_days = [repeat_days, revenue_days] | max -%}
{#- The two revenue windows around a response, each read for its sum and for an unknown amount. -#}
{%- set in_revenue_prior_window = 'completed_orders.ordered_at >= '
    ~ dbt.dateadd('day', -revenue_days, 'responses.responded_at')
    ~ ' and completed_orders.ordered_at < responses.responded_at' -%}
{%- set in_revenue_next_window = 'completed_orders.ordered_at > responses.responded_at'
    ~ ' and completed_orders.ordered_at <= ' ~ dbt.dateadd('day', revenue_days, 'responses.responded_at') -%}

with

run_parameters as (

    select as_of_at, input_seq from {{ ref('int_run_parameters') }}

),

{% if is_incremental() -%}
-- Rows built with another cut-off: between their as_of and this one (lo, hi], a window may have
-- closed (censoring flips) and orders may have entered or left the cut-off.
stale_cut_off as (

    select
        built.response_id,
        built.customer_id,
        built.responded_at,
        built._as_of_at as built_as_of_at,
        run_parameters.as_of_at as current_as_of_at,
        least(built._as_of_at, run_parameters.as_of_at) as lo,
        greatest(built._as_of_at, run_parameters.as_of_at) as hi
    from {{ this }} as built
    cross join run_parameters
    where built._as_of_at is distinct from run_parameters.as_of_at

),

orders_between_cut_offs as (

    select orders.customer_id, orders.ordered_at
    from {{ ref('int_orders_converted') }} as orders
    where orders.status = 'completed'
        and orders.ordered_at > (select min(lo) from stale_cut_off)
        and orders.ordered_at <= (select max(hi) from stale_cut_off)

),

-- Exactly the rows whose figures the cut-off move can change: a censoring boundary crossed, or an
-- order inside one of the row's windows that one cut-off counts and the other does not.
cut_off_affected as (

    select stale_cut_off.response_id
    from stale_cut_off
    where stale_cut_off.built_as_of_at is null
        or stale_cut_off.current_as_of_at is null
        or ({{ dbt.dateadd('day', repeat_days, 'stale_cut_off.responded_at') }} > stale_cut_off.lo
            and {{ dbt.dateadd('day', repeat_days, 'stale_cut_off.responded_at') }} <= stale_cut_off.hi)
        or ({{ dbt.dateadd('day', revenue_days, 'stale_cut_off.responded_at') }} > stale_cut_off.lo
            and {{ dbt.dateadd('day', revenue_days, 'stale_cut_off.responded_at') }} <= stale_cut_off.hi)
        or exists (
            select 1
            from orders_between_cut_offs
            where orders_between_cut_offs.customer_id = stale_cut_off.customer_id
                and orders_between_cut_offs.ordered_at > stale_cut_off.lo
                and orders_between_cut_offs.ordered_at <= stale_cut_off.hi
                and orders_between_cut_offs.ordered_at >= {{ dbt.dateadd('day', -reach_days, 'stale_cut_off.responded_at') }}
                and orders_between_cut_offs.ordered_at <= {{ dbt.dateadd('day', reach_days, 'stale_cut_off.responded_at') }}
        )

),

{% endif -%}
responses as (

    select response_id, customer_id, responded_at from {{ ref('stg_survey__responses') }}
    {%- if is_incremental() %}
    -- Recomputed: responses of customers with a new delivery, rows the cut-off move can change, and
    -- everything when a window or the currency changed.
    where customer_id in ({{ customers_delivered_since(delivery_watermark(), ['responses', 'orders']) }})
        or response_id in (select response_id from cut_off_affected)
        or exists (select 1 from {{ this }} where _parameters <> {{ run_parameters_key() }})
    {%- endif %}

),

completed_orders as (

    select
        orders.customer_id,
        orders.ordered_at,
        orders.amount_reporting,
        orders.is_purchase
    from {{ ref('int_orders_converted') }} as orders
    cross join run_parameters
    -- Nothing after the cut-off counts, so a re-run with the same as_of gives the same numbers.
    where orders.status = 'completed'
        and orders.ordered_at <= run_parameters.as_of_at

),

-- One pass over each customer's orders around each response (equi-join on customer_id plus a
-- range covering both windows) yields repeat, revenue before and revenue after together.
orders_around_response as (

    select
        responses.response_id,
        max(
            case
                -- A credit note in the window is a refund, not a purchase again.
                when completed_orders.is_purchase
                    and completed_orders.ordered_at > responses.responded_at
                    and completed_orders.ordered_at <= {{ dbt.dateadd('day', repeat_days, 'responses.responded_at') }}
                    then 1
                else 0
            end
        ) as has_repeat_order,
        sum(case when {{ in_revenue_prior_window }} then completed_orders.amount_reporting end) as revenue_prior,
        sum(case when {{ in_revenue_next_window }} then completed_orders.amount_reporting end) as revenue_next,
        -- An order in a window whose currency has no rate in the seed makes that window's revenue
        -- unknown (NULL), not a smaller sum.
        max(
            case when {{ in_revenue_prior_window }} and completed_orders.amount_reporting is null then 1 else 0 end
        ) as revenue_prior_unknown,
        max(
            case when {{ in_revenue_next_window }} and completed_orders.amount_reporting is null then 1 else 0 end
        ) as revenue_next_unknown
    from responses
    inner join completed_orders
        on completed_orders.customer_id = responses.customer_id
        and completed_orders.ordered_at >= {{ dbt.dateadd('day', -reach_days, 'responses.responded_at') }}
        and completed_orders.ordered_at <= {{ dbt.dateadd('day', reach_days, 'responses.responded_at') }}
    group by responses.response_id

)

select
    responses.response_id,
    responses.customer_id,
    responses.responded_at,
    -- Censored (NULL) while the window is still open at as_of: "no order yet" is not "no repeat".
    case
        when run_parameters.as_of_at is null
            or {{ dbt.dateadd('day', repeat_days, 'responses.responded_at') }} > run_parameters.as_of_at
            then null
        else coalesce(orders_around_response.has_repeat_order, 0)
    end as repeat_after,
    case
        when orders_around_response.revenue_prior_unknown = 1 then null
        else coalesce(orders_around_response.revenue_prior, 0)
    end as revenue_prior_365d,
    case
        when run_parameters.as_of_at is null
            or {{ dbt.dateadd('day', revenue_days, 'responses.responded_at') }} > run_parameters.as_of_at
            or orders_around_response.revenue_next_unknown = 1
            then null
        else coalesce(orders_around_response.revenue_next, 0)
    end as revenue_next_365d,
    run_parameters.as_of_at as _as_of_at,
    run_parameters.input_seq as _input_seq,
    {{ run_parameters_key() }} as _parameters
from responses
cross join run_parameters
left join orders_around_response
    on orders_around_response.response_id = responses.response_id
