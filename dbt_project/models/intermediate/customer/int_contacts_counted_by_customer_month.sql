with

activities as (

    select customer_id, direction, occurred_at from {{ ref('stg_crm__activities') }}

),

run_parameters as (

    select as_of_at from {{ ref('int_run_parameters') }}

),

dated as (

    select
        activities.customer_id,
        activities.direction,
        {{ reporting_month('activities.occurred_at') }} as month
    from activities
    cross join run_parameters
    where activities.occurred_at <= run_parameters.as_of_at

)

select
    customer_id,
    month,
    cast(sum(case when direction = 'outbound' then 1 else 0 end) as {{ dbt.type_bigint() }}) as contacts,
    cast(sum(case when direction = 'inbound' then 1 else 0 end) as {{ dbt.type_bigint() }}) as inbound_contacts
from dated
group by customer_id, month
