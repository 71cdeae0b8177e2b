{#- A view: the orders are stored once, in staging (incremental); a table here would rewrite
    every order of the history on every run. -#}
{{ config(materialized='view') }}

with

orders as (

    select * from {{ ref('int_orders_converted') }}

),

run_parameters as (

    select as_of_at from {{ ref('int_run_parameters') }}

),

customers as (

    select customer_id, is_orphan from {{ ref('dim_customers') }}

)

select
    orders.order_id,
    orders.customer_id,
    orders.ordered_at,
    orders.status,
    orders.currency,
    orders.amount,
    orders.amount_reporting,
    orders.product_line,
    coalesce(customers.is_orphan, true) as is_orphan_customer
from orders
cross join run_parameters
left join customers
    on customers.customer_id = orders.customer_id
where orders.ordered_at <= run_parameters.as_of_at
