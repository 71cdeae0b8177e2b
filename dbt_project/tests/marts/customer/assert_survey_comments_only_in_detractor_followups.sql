-- Fails with each mart other than detractor_followups that has a comment column: free text may name
-- people (contract pii: possible), so DESIGN.md allows it only where follow-up needs it.

-- Runs after every mart, and so after every staging and intermediate model they are built from:
-- depends_on: {{ ref('dim_customers') }}
-- depends_on: {{ ref('dim_reps') }}
-- depends_on: {{ ref('fct_crm_contacts') }}
-- depends_on: {{ ref('fct_orders') }}
-- depends_on: {{ ref('fct_survey_responses') }}
-- depends_on: {{ ref('fct_survey_driver_scores') }}
-- depends_on: {{ ref('detractor_followups') }}
-- depends_on: {{ ref('fct_customer_months') }}
-- depends_on: {{ ref('nps_by_period') }}
-- depends_on: {{ ref('load_audit') }}
-- Dagster shows it as a check of detractor_followups (a singular test with several refs needs one named).
{{ config(meta={'dagster': {'ref': {'name': 'detractor_followups'}}}) }}

select
    table_name,
    column_name
from information_schema.columns
where lower(table_schema) = 'marts'
    and lower(column_name) = 'comment'
    and lower(table_name) <> 'detractor_followups'
