{%- set followup_days = var('followup_window_days') | int -%}
{#- The as_of cut-off, a literal on DuckDB so that the view plans well (macros/cut_off.sql). -#}
{%- set as_of_at = as_of_cut_off() -%}
{#- A view: a filter of the stored responses with their customer's owner and manager; a table
    here would re-read every response of the history on every run. -#}
{{ config(materialized='view') }}

with

responses as (

    select * from {{ ref('int_responses_categorized') }}

),

customers as (

    select customer_id, segment, business_unit, owner_rep_id from {{ ref('dim_customers') }}

),

reps as (

    select rep_id, manager_rep_id from {{ ref('dim_reps') }}

),

detractors as (

    select responses.*
    from responses
    where responses.nps_category = 'detractor'
        and responses.responded_at <= {{ as_of_at }}

)

select
    detractors.response_id,
    detractors.customer_id,
    detractors.survey_type,
    detractors.touchpoint,
    detractors.responded_at,
    detractors.nps_score,
    detractors.comment,
    customers.segment,
    customers.business_unit,
    customers.owner_rep_id,
    reps.manager_rep_id,
    {{ dbt.dateadd('day', followup_days, 'detractors.responded_at') }} as followup_due_at,
    -- Still worth a call-back at as_of; older detractors stay listed for the record.
    {{ dbt.dateadd('day', followup_days, 'detractors.responded_at') }} > {{ as_of_at }}
        as is_in_followup_window,
    -- Bookkeeping, not analysis: the delivery the row came from, which scopes the grain test of an
    -- incremental run to the rows delivered since the last publish (macros/test_scope.sql).
    detractors._delivery_seq
from detractors
left join customers
    on customers.customer_id = detractors.customer_id
left join reps
    on reps.rep_id = customers.owner_rep_id
