with

responses as (

    select * from {{ ref('int_responses_categorized') }}

),

exposure as (

    select * from {{ ref('int_responses_with_exposure') }}

),

repeat_purchases as (

    select * from {{ ref('int_responses_with_repeat') }}

),

customers as (

    select customer_id, segment, business_unit, created_at, contact_email_key, is_orphan
    from {{ ref('dim_customers') }}

),

run_parameters as (

    select as_of_at from {{ ref('int_run_parameters') }}

)

select
    responses.response_id,
    responses.customer_id,
    responses.survey_type,
    responses.touchpoint,
    responses.responded_at,
    {{ reporting_month('responses.responded_at') }} as response_month,
    responses.nps_score,
    responses.nps_category,
    exposure.contacts_before,
    exposure.inbound_before,
    exposure.exposure_days,
    exposure.contacts_per_month,
    repeat_purchases.repeat_after,
    customers.segment,
    customers.business_unit,
    {{ days_between('customers.created_at', 'responses.responded_at') }} as tenure_days,
    repeat_purchases.revenue_prior_365d,
    repeat_purchases.revenue_next_365d,
    coalesce(customers.is_orphan, true) as is_orphan_customer,
    responses.respondent_email_key,
    -- Did the account's registered contact answer? Compared on keyed hashes, never on addresses.
    case
        when responses.respondent_email_key is null or customers.contact_email_key is null then null
        else responses.respondent_email_key = customers.contact_email_key
    end as is_account_contact
from responses
cross join run_parameters
inner join exposure
    on exposure.response_id = responses.response_id
inner join repeat_purchases
    on repeat_purchases.response_id = responses.response_id
left join customers
    on customers.customer_id = responses.customer_id
where responses.responded_at <= run_parameters.as_of_at
