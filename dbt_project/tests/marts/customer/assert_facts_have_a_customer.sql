-- Warns with each contact, response or order up to as_of whose customer is not in dim_customers.
-- dim_customers carries orphans too, so a miss is not an orphan but a customer lost between models.
-- The facts marts (fct_crm_contacts, fct_orders, fct_survey_responses, detractor_followups) hold
-- exactly these staged rows up to as_of with this customer_id, so this one query over the staged
-- facts replaces a relationships test on each mart (each re-read a view or a table of the whole
-- history). On an incremental run only the rows delivered since the last published build
-- (macros/test_scope.sql): accounts and orphans only grow while the cut-off moves forward, so an
-- older fact keeps its customer.
-- Dagster shows it as a check of dim_customers (a singular test with several refs needs one named).
{{ config(severity='warn', meta={'dagster': {'ref': {'name': 'dim_customers'}}}) }}

{%- set since = previous_input_seq() %}

with

run_parameters as (

    select as_of_at from {{ ref('int_run_parameters') }}

),

facts as (

    select 'activity' as fact, activity_id as fact_id, customer_id, occurred_at as happened_at, _delivery_seq
    from {{ ref('stg_crm__activities') }}
    union all
    select 'response' as fact, response_id as fact_id, customer_id, responded_at as happened_at, _delivery_seq
    from {{ ref('stg_survey__responses') }}
    union all
    select 'order' as fact, order_id as fact_id, customer_id, ordered_at as happened_at, _delivery_seq
    from {{ ref('stg_billing__orders') }}

),

facts_in_scope as (

    select facts.fact, facts.fact_id, facts.customer_id
    from facts
    cross join run_parameters
    where facts.happened_at <= run_parameters.as_of_at
        and facts.customer_id is not null
        {%- if since is not none %}
        and facts._delivery_seq > {{ since }}
        {%- endif %}

),

customers as (

    select customer_id from {{ ref('dim_customers') }}

)

select facts_in_scope.fact, facts_in_scope.fact_id, facts_in_scope.customer_id
from facts_in_scope
left join customers
    on customers.customer_id = facts_in_scope.customer_id
where customers.customer_id is null
