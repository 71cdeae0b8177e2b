with

responses as (

    select * from {{ ref('stg_survey__responses') }}

),

categorized as (

    select
        response_id,
        customer_id,
        survey_type,
        touchpoint,
        responded_at,
        nps_score,
        comment,
        respondent_email_key,
        _delivery_seq,
        {{ nps_category('nps_score') }} as nps_category
    from responses

)

select
    response_id,
    customer_id,
    survey_type,
    touchpoint,
    responded_at,
    nps_score,
    comment,
    respondent_email_key,
    nps_category,
    -- 0/1 flags derived from the category (never from the score again), so sums give the counts.
    case when nps_category = 'promoter' then 1 else 0 end as is_promoter,
    case when nps_category = 'passive' then 1 else 0 end as is_passive,
    case when nps_category = 'detractor' then 1 else 0 end as is_detractor,
    -- Kept for the bookkeeping of what reads this view (detractor_followups' grain test).
    _delivery_seq
from categorized
