{#- The as_of cut-off, a literal on DuckDB so that the view plans well (macros/cut_off.sql). -#}
{%- set as_of_at = as_of_cut_off() -%}
{#- A view: the orders are stored once, in staging (incremental); a table here would rewrite
    every order of the history on every run. -#}
{{ config(materialized='view') }}

with

orders as (

    select * from {{ ref('int_orders_converted') }}

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
    orders.is_purchase,
    orders.product_line,
    coalesce(customers.is_orphan, true) as is_orphan_customer,
    -- Bookkeeping, not analysis: the delivery the row came from, which scopes the grain test of an
    -- incremental run to the rows delivered since the last publish (macros/test_scope.sql).
    orders._delivery_seq
from orders
left join customers
    on customers.customer_id = orders.customer_id
where orders.ordered_at <= {{ as_of_at }}
