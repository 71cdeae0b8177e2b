-- Fails with every warehouse column that carries personal data by name (the contract's pii columns
-- and customer_name): DESIGN.md promises they never leave the lake. Free-text comments are allowed
-- and live only in detractor_followups.

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
-- Dagster shows it as a check of dim_customers (a singular test with several refs needs one named).
{{ config(meta={'dagster': {'ref': {'name': 'dim_customers'}}}) }}

select
    table_schema,
    table_name,
    column_name
from information_schema.columns
where lower(table_schema) in ('staging', 'intermediate', 'marts')
    and lower(column_name) in ('contact_email', 'customer_name', 'rep_name', 'email', 'respondent_email')
