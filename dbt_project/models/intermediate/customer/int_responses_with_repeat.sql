{%- set repeat_days = var('repeat_window_days') | int -%}
{%- set revenue_days = var('revenue_window_days') | int -%}
{%- set reach_days = [repeat_days, revenue_days] | max -%}

with

responses as (

    select response_id, customer_id, responded_at from {{ ref('stg_survey__responses') }}

),

run_parameters as (

    select as_of_at from {{ ref('int_run_parameters') }}

),

completed_orders as (

    select
        orders.customer_id,
        orders.ordered_at,
        orders.amount_reporting
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
                when completed_orders.ordered_at > responses.responded_at
                    and completed_orders.ordered_at <= {{ dbt.dateadd('day', repeat_days, 'responses.responded_at') }}
                    then 1
                else 0
            end
        ) as has_repeat_order,
        sum(
            case
                when completed_orders.ordered_at >= {{ dbt.dateadd('day', -revenue_days, 'responses.responded_at') }}
                    and completed_orders.ordered_at < responses.responded_at
                    then completed_orders.amount_reporting
            end
        ) as revenue_prior,
        sum(
            case
                when completed_orders.ordered_at > responses.responded_at
                    and completed_orders.ordered_at <= {{ dbt.dateadd('day', revenue_days, 'responses.responded_at') }}
                    then completed_orders.amount_reporting
            end
        ) as revenue_next
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
    coalesce(orders_around_response.revenue_prior, 0) as revenue_prior_365d,
    case
        when run_parameters.as_of_at is null
            or {{ dbt.dateadd('day', revenue_days, 'responses.responded_at') }} > run_parameters.as_of_at
            then null
        else coalesce(orders_around_response.revenue_next, 0)
    end as revenue_next_365d
from responses
cross join run_parameters
left join orders_around_response
    on orders_around_response.response_id = responses.response_id
