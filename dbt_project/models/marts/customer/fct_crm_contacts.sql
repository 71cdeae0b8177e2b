{#- A view: the activities are stored once, in staging (incremental); a table here would rewrite
    every activity of the history on every run. -#}
{{ config(materialized='view') }}

with

activities as (

    select * from {{ ref('stg_crm__activities') }}

),

run_parameters as (

    select as_of_at from {{ ref('int_run_parameters') }}

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
    coalesce(customers.is_orphan, true) as is_orphan_customer
from activities
cross join run_parameters
left join customers
    on customers.customer_id = activities.customer_id
where activities.occurred_at <= run_parameters.as_of_at
