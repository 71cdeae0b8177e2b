-- Fails when the monthly totals of fct_customer_months differ from the facts they summarize
-- (outbound and inbound contacts, responses, completed orders and their revenue): an event fell
-- outside the month spine, or a join fanned out.
-- Contacts and orders are read where fct_crm_contacts and fct_orders read them, with the same as_of
-- filter: those views add only is_orphan_customer, a left join to dim_customers (unique on
-- customer_id, tested), which cannot change a count or a sum but made this test read 20M+
-- activities through a join (5 s at L, on every run; 0.2 s without it).
-- Dagster shows it as a check of fct_customer_months (a singular test with several refs needs one named).
{{ config(meta={'dagster': {'ref': {'name': 'fct_customer_months'}}}) }}

with

run_parameters as (

    select as_of_at from {{ ref('int_run_parameters') }}

),

months as (

    select
        sum(contacts) as contacts,
        sum(inbound_contacts) as inbound_contacts,
        sum(responses) as responses,
        sum(orders) as orders,
        sum(revenue) as revenue
    from {{ ref('fct_customer_months') }}

),

contacts as (

    select
        sum(case when activities.direction = 'outbound' then 1 else 0 end) as contacts,
        sum(case when activities.direction = 'inbound' then 1 else 0 end) as inbound_contacts
    from {{ ref('stg_crm__activities') }} as activities
    cross join run_parameters
    where activities.occurred_at <= run_parameters.as_of_at

),

responses as (

    select count(*) as responses from {{ ref('fct_survey_responses') }}

),

orders as (

    select
        sum(case when orders.is_purchase then 1 else 0 end) as orders,
        sum(orders.amount_reporting) as revenue
    from {{ ref('int_orders_converted') }} as orders
    cross join run_parameters
    where orders.status = 'completed'
        and orders.ordered_at <= run_parameters.as_of_at

)

select
    months.contacts as month_contacts,
    contacts.contacts as fact_contacts,
    months.inbound_contacts as month_inbound_contacts,
    contacts.inbound_contacts as fact_inbound_contacts,
    months.responses as month_responses,
    responses.responses as fact_responses,
    months.orders as month_orders,
    orders.orders as fact_orders,
    months.revenue as month_revenue,
    orders.revenue as fact_revenue
from months
cross join contacts
cross join responses
cross join orders
where coalesce(months.contacts, 0) <> coalesce(contacts.contacts, 0)
    or coalesce(months.inbound_contacts, 0) <> coalesce(contacts.inbound_contacts, 0)
    or coalesce(months.responses, 0) <> coalesce(responses.responses, 0)
    or coalesce(months.orders, 0) <> coalesce(orders.orders, 0)
    -- Sums of doubles in a different order may differ in the last bits, not by a yen.
    or abs(coalesce(months.revenue, 0) - coalesce(orders.revenue, 0)) > 0.01
