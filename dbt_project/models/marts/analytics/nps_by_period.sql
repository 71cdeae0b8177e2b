with

responses as (

    select * from {{ ref('int_responses_categorized') }}

),

customers as (

    select customer_id, segment, business_unit from {{ ref('dim_customers') }}

),

run_parameters as (

    select as_of_at from {{ ref('int_run_parameters') }}

),

dimensions as (

    select 'overall' as dimension
    union all
    select 'segment' as dimension
    union all
    select 'business_unit' as dimension
    union all
    select 'touchpoint' as dimension

),

responses_in_period as (

    select
        {{ reporting_month('responses.responded_at') }} as period_month,
        responses.survey_type,
        responses.touchpoint,
        customers.segment,
        customers.business_unit,
        responses.is_promoter,
        responses.is_passive,
        responses.is_detractor
    from responses
    cross join run_parameters
    left join customers
        on customers.customer_id = responses.customer_id
    where responses.responded_at <= run_parameters.as_of_at

),

-- Each response once per dimension (four rows), so a single grouping pass serves all of them.
responses_by_dimension as (

    select
        responses_in_period.period_month,
        responses_in_period.survey_type,
        dimensions.dimension,
        coalesce(
            case dimensions.dimension
                when 'overall' then 'all'
                when 'segment' then responses_in_period.segment
                when 'business_unit' then responses_in_period.business_unit
                when 'touchpoint' then responses_in_period.touchpoint
            end,
            'unknown'
        ) as dimension_value,
        responses_in_period.is_promoter,
        responses_in_period.is_passive,
        responses_in_period.is_detractor
    from responses_in_period
    cross join dimensions

),

-- The second grouping set drops survey_type: those rows are every survey type together ('all').
-- survey_type is never NULL in the data, so NULL here only marks that set.
counted as (

    select
        period_month,
        coalesce(survey_type, 'all') as survey_type,
        dimension,
        dimension_value,
        count(*) as responses,
        cast(sum(is_promoter) as {{ dbt.type_bigint() }}) as promoters,
        cast(sum(is_passive) as {{ dbt.type_bigint() }}) as passives,
        cast(sum(is_detractor) as {{ dbt.type_bigint() }}) as detractors
    from responses_by_dimension
    group by grouping sets (
        (period_month, survey_type, dimension, dimension_value),
        (period_month, dimension, dimension_value)
    )

)

select
    period_month,
    survey_type,
    dimension,
    dimension_value,
    responses,
    promoters,
    passives,
    detractors,
    {{ nps('promoters', 'detractors', 'responses') }} as nps,
    {{ nps_moe95('promoters', 'detractors', 'responses') }} as nps_moe95
from counted
