{#- Incremental by response (macros/incremental.sql): a run rewrites the responses whose exposure,
    repeat or customer row changed since, and those the cut-off move lets in; the pre-hook drops the
    ones an earlier cut-off leaves out. -#}
{{
    config(
        materialized=incremental_materialization(),
        unique_key='response_id',
        incremental_strategy='delete+insert',
        pre_hook="{{ drop_rows_after_as_of('responded_at') }}",
    )
}}

with

run_parameters as (

    select as_of_at, input_seq from {{ ref('int_run_parameters') }}

),

{% if is_incremental() -%}
built as (

    {{ stored_cut_offs() }}

),

-- The inputs' rows rewritten since this model's watermark (a new delivery), or by this run (the
-- cut-off moved): the responses whose columns can differ from the stored ones. This sees only the
-- rows rewritten for the current cut-off, so a build that stopped after its inputs moved to another
-- cut-off must not be followed by an incremental one: the orchestrator then runs a full refresh
-- (orchestration/lib/dbt.py `full_refresh_reason`).
scope as (

    select customer_id from {{ ref('int_responses_with_exposure') }}
    where _input_seq > {{ delivery_watermark() }}
    union
    select customer_id from {{ ref('int_responses_with_repeat') }}
    where _input_seq > {{ delivery_watermark() }}
        or (_input_seq = (select input_seq from run_parameters) and _as_of_at = (select as_of_at from run_parameters))
    union
    select customer_id from {{ ref('dim_customers') }}
    where _input_seq > {{ delivery_watermark() }}
        or (_input_seq = (select input_seq from run_parameters) and _as_of_at = (select as_of_at from run_parameters))
    union
    -- Responses the cut-off move lets in: not stored yet (the ones it leaves out, the pre-hook drops).
    select customer_id from {{ ref('int_responses_categorized') }}
    where responded_at > least((select min_as_of_at from built), (select as_of_at from run_parameters))
        and responded_at <= (select as_of_at from run_parameters)
        and response_id not in (select response_id from {{ this }})

),

{% endif -%}
responses as (

    select * from {{ ref('int_responses_categorized') }}
    where true
        {{- customer_in_incremental_scope('customer_id') }}

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
    end as is_account_contact,
    run_parameters.as_of_at as _as_of_at,
    run_parameters.input_seq as _input_seq,
    {{ run_parameters_key() }} as _parameters
from responses
cross join run_parameters
inner join exposure
    on exposure.response_id = responses.response_id
inner join repeat_purchases
    on repeat_purchases.response_id = responses.response_id
left join customers
    on customers.customer_id = responses.customer_id
where responses.responded_at <= run_parameters.as_of_at
