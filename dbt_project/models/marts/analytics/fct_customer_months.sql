with

run_parameters as (

    select as_of_at from {{ ref('int_run_parameters') }}

),

contacts as (

    select customer_id, month, contacts, inbound_contacts
    from {{ ref('int_contacts_counted_by_customer_month') }}

),

responses as (

    select
        responses.customer_id,
        {{ reporting_month('responses.responded_at') }} as month,
        count(*) as responses,
        avg(cast(responses.nps_score as {{ type_double() }})) as avg_nps_score
    from {{ ref('stg_survey__responses') }} as responses
    cross join run_parameters
    where responses.responded_at <= run_parameters.as_of_at
    group by responses.customer_id, {{ reporting_month('responses.responded_at') }}

),

orders as (

    select
        orders.customer_id,
        {{ reporting_month('orders.ordered_at') }} as month,
        sum(orders.amount_reporting) as revenue,
        count(*) as orders
    from {{ ref('int_orders_converted') }} as orders
    cross join run_parameters
    where orders.status = 'completed'
        and orders.ordered_at <= run_parameters.as_of_at
    group by orders.customer_id, {{ reporting_month('orders.ordered_at') }}

),

created as (

    select
        accounts.customer_id,
        {{ reporting_month('accounts.created_at') }} as month
    from {{ ref('stg_crm__accounts') }} as accounts
    cross join run_parameters
    where accounts.created_at <= run_parameters.as_of_at

),

-- A customer's first month is the earliest of its account creation and any event (an orphan has
-- only events; a contact can predate the account).
customer_first_months as (

    select customer_id, min(month) as first_month
    from (
        select customer_id, month from created
        union all
        select customer_id, month from contacts
        union all
        select customer_id, month from responses
        union all
        select customer_id, month from orders
    ) as customer_event_months
    group by customer_id

),

months as (

    {{ month_series(
        '(select min(first_month) from customer_first_months)',
        '(select ' ~ reporting_month('as_of_at') ~ ' from run_parameters)'
    ) }}

),

-- Dense: every month from the customer's first to the as_of month, so a quiet month is a row of
-- zeros, not a missing row (the analysis reads months without activity as data).
customer_months as (

    select
        customer_first_months.customer_id,
        months.month
    from customer_first_months
    inner join months
        on months.month >= customer_first_months.first_month

)

select
    customer_months.customer_id,
    customer_months.month,
    cast(coalesce(contacts.contacts, 0) as {{ dbt.type_bigint() }}) as contacts,
    cast(coalesce(contacts.inbound_contacts, 0) as {{ dbt.type_bigint() }}) as inbound_contacts,
    cast(coalesce(responses.responses, 0) as {{ dbt.type_bigint() }}) as responses,
    responses.avg_nps_score,
    coalesce(orders.revenue, 0.0) as revenue,
    cast(coalesce(orders.orders, 0) as {{ dbt.type_bigint() }}) as orders
from customer_months
left join contacts
    on contacts.customer_id = customer_months.customer_id
    and contacts.month = customer_months.month
left join responses
    on responses.customer_id = customer_months.customer_id
    and responses.month = customer_months.month
left join orders
    on orders.customer_id = customer_months.customer_id
    and orders.month = customer_months.month
