with

orders as (

    select * from {{ ref('stg_billing__orders') }}

),

fx_rates as (

    select currency, rate from {{ ref('fx_rates_to_reporting') }}

),

reporting_rate as (

    -- Aggregated so it is always exactly one row: a reporting currency missing from the seed gives
    -- NULL amounts (and a failing test) instead of silently dropping every order.
    select max(rate) as rate from fx_rates where currency = '{{ var("reporting_currency") }}'

)

select
    orders.order_id,
    orders.customer_id,
    orders.ordered_at,
    orders.status,
    orders.currency,
    orders.amount,
    -- The seed holds JPY per unit; dividing by the reporting currency's own rate makes any listed
    -- currency the reporting one. An unlisted currency yields NULL (warned on in staging).
    cast(orders.amount as {{ type_double() }}) * order_rate.rate / reporting_rate.rate as amount_reporting,
    -- A purchase: a completed order that is not a credit note (the contract lets a credit note carry
    -- a negative amount). Only purchases make a repeat, a first order or a month's order count; a
    -- credit note still nets off revenue, which sums every completed row.
    orders.status = 'completed' and orders.amount >= 0 as is_purchase,
    orders.product_line,
    -- Kept for the incremental models' bookkeeping (macros/incremental.sql).
    orders._delivery_seq,
    orders._first_delivery_seq
from orders
left join fx_rates as order_rate
    on order_rate.currency = orders.currency
cross join reporting_rate
