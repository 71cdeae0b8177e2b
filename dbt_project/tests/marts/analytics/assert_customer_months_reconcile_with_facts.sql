-- Fails when the monthly totals of fct_customer_months differ from the facts they summarize
-- (outbound and inbound contacts, responses, completed orders and their revenue): an event fell
-- outside the month spine, or a join fanned out.

with

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
        sum(case when direction = 'outbound' then 1 else 0 end) as contacts,
        sum(case when direction = 'inbound' then 1 else 0 end) as inbound_contacts
    from {{ ref('fct_crm_contacts') }}

),

responses as (

    select count(*) as responses from {{ ref('fct_survey_responses') }}

),

orders as (

    select
        count(*) as orders,
        sum(amount_reporting) as revenue
    from {{ ref('fct_orders') }}
    where status = 'completed'

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
