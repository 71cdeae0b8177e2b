{#- The as_of cut-off, a literal on DuckDB so that the view plans well (macros/cut_off.sql). -#}
{%- set as_of_at = as_of_cut_off() -%}
{#- A view: the activities are stored once, in staging (incremental); a table here would rewrite
    every activity of the history on every run. -#}
{{ config(materialized='view') }}

with

activities as (

    select * from {{ ref('stg_crm__activities') }}

),

customers as (

    select customer_id, is_orphan from {{ ref('dim_customers') }}

)

select
    activities.activity_id,
    activities.customer_id,
    activities.rep_id,
    activities.activity_type,
    activities.direction,
    activities.occurred_at,
    activities.duration_minutes,
    coalesce(customers.is_orphan, true) as is_orphan_customer,
    -- Bookkeeping, not analysis: the delivery the row came from, which scopes the grain test of an
    -- incremental run to the rows delivered since the last publish (macros/test_scope.sql).
    activities._delivery_seq
from activities
left join customers
    on customers.customer_id = activities.customer_id
where activities.occurred_at <= {{ as_of_at }}
