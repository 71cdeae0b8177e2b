{{
    config(
        materialized=incremental_materialization(),
        unique_key='customer_id',
        incremental_strategy='delete+insert',
        pre_hook="{{ empty_customer_months_when_all_change() }}",
    )
}}

with

run_parameters as (

    select as_of_at, input_seq from {{ ref('int_run_parameters') }}

),

{% if is_incremental() -%}
built as (

    select
        min(_as_of_at) as min_as_of_at,
        max(_as_of_at) as max_as_of_at,
        -- The pre-hook emptied the table when every customer's months change: recompute them all.
        case when count(*) = 0 then 1 else 0 end as recompute_all
    from {{ this }}

),

-- Events between the stored cut-offs and this one: they enter (or leave) their month's counts.
cut_off_window as (

    select
        least(built.min_as_of_at, run_parameters.as_of_at) as lo,
        greatest(built.max_as_of_at, run_parameters.as_of_at) as hi
    from built
    cross join run_parameters

),

scope as (

    {{ customers_delivered_since(delivery_watermark(), ['activities', 'responses', 'orders', 'accounts']) }}
    union
    select customer_id from {{ ref('stg_crm__activities') }}
    where occurred_at > (select lo from cut_off_window) and occurred_at <= (select hi from cut_off_window)
    union
    select customer_id from {{ ref('stg_survey__responses') }}
    where responded_at > (select lo from cut_off_window) and responded_at <= (select hi from cut_off_window)
    union
    select customer_id from {{ ref('int_orders_converted') }}
    where ordered_at > (select lo from cut_off_window) and ordered_at <= (select hi from cut_off_window)
    union
    select customer_id from {{ ref('stg_crm__accounts') }}
    where created_at > (select lo from cut_off_window) and created_at <= (select hi from cut_off_window)

),

{% endif -%}

activities as (

    select
        activities.customer_id,
        {{ reporting_month('activities.occurred_at') }} as month,
        activities.direction
    from {{ ref('stg_crm__activities') }} as activities
    cross join run_parameters
    where activities.occurred_at <= run_parameters.as_of_at
        {{- customer_in_incremental_scope('activities.customer_id') }}

),

contacts as (

    select
        customer_id,
        month,
        cast(sum(case when direction = 'outbound' then 1 else 0 end) as {{ dbt.type_bigint() }}) as contacts,
        cast(sum(case when direction = 'inbound' then 1 else 0 end) as {{ dbt.type_bigint() }}) as inbound_contacts
    from activities
    group by customer_id, month

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
        {{- customer_in_incremental_scope('responses.customer_id') }}
    group by responses.customer_id, {{ reporting_month('responses.responded_at') }}

),

orders as (

    select
        orders.customer_id,
        {{ reporting_month('orders.ordered_at') }} as month,
        -- Unknown (NULL), not a smaller sum, when an order's currency has no rate in the seed.
        case when count(orders.amount_reporting) = count(*) then sum(orders.amount_reporting) end as revenue,
        sum(case when orders.is_purchase then 1 else 0 end) as orders
    from {{ ref('int_orders_converted') }} as orders
    cross join run_parameters
    where orders.status = 'completed'
        and orders.ordered_at <= run_parameters.as_of_at
        {{- customer_in_incremental_scope('orders.customer_id') }}
    group by orders.customer_id, {{ reporting_month('orders.ordered_at') }}

),

created as (

    select
        accounts.customer_id,
        {{ reporting_month('accounts.created_at') }} as month
    from {{ ref('stg_crm__accounts') }} as accounts
    cross join run_parameters
    where accounts.created_at <= run_parameters.as_of_at
        {{- customer_in_incremental_scope('accounts.customer_id') }}

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
    case when orders.customer_id is null then 0.0 else orders.revenue end as revenue,
    cast(coalesce(orders.orders, 0) as {{ dbt.type_bigint() }}) as orders,
    run_parameters.as_of_at as _as_of_at,
    run_parameters.input_seq as _input_seq,
    {{ run_parameters_key() }} as _parameters
from customer_months
cross join run_parameters
left join contacts
    on contacts.customer_id = customer_months.customer_id
    and contacts.month = customer_months.month
left join responses
    on responses.customer_id = customer_months.customer_id
    and responses.month = customer_months.month
left join orders
    on orders.customer_id = customer_months.customer_id
    and orders.month = customer_months.month
