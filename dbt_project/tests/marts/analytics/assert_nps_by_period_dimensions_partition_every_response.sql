-- Fails when, for some month and survey type, a dimension's rows do not add up to the number of
-- responses in fct_survey_responses: a response was dropped or counted twice in nps_by_period
-- (e.g. a NULL segment not mapped to 'unknown', or the 'all' survey-type rollup double counting).
-- Dagster shows it as a check of nps_by_period (a singular test with several refs needs one named).
{{ config(meta={'dagster': {'ref': {'name': 'nps_by_period'}}}) }}

with

fact_counts as (

    select
        {{ reporting_month('responded_at') }} as period_month,
        survey_type,
        count(*) as responses
    from {{ ref('fct_survey_responses') }}
    group by {{ reporting_month('responded_at') }}, survey_type

),

fact_counts_all_types as (

    select period_month, survey_type, responses from fact_counts
    union all
    select period_month, 'all' as survey_type, sum(responses) as responses
    from fact_counts
    group by period_month

),

dimension_counts as (

    select period_month, survey_type, dimension, sum(responses) as responses
    from {{ ref('nps_by_period') }}
    group by period_month, survey_type, dimension

),

dimensions as (

    select 'overall' as dimension
    union all
    select 'segment' as dimension
    union all
    select 'business_unit' as dimension
    union all
    select 'touchpoint' as dimension

)

select
    fact_counts_all_types.period_month,
    fact_counts_all_types.survey_type,
    dimensions.dimension,
    fact_counts_all_types.responses as fact_responses,
    dimension_counts.responses as nps_by_period_responses
from fact_counts_all_types
cross join dimensions
left join dimension_counts
    on dimension_counts.period_month = fact_counts_all_types.period_month
    and dimension_counts.survey_type = fact_counts_all_types.survey_type
    and dimension_counts.dimension = dimensions.dimension
where dimension_counts.responses is null
    or dimension_counts.responses <> fact_counts_all_types.responses
