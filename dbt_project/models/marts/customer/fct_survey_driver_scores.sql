with

driver_scores as (

    select * from {{ ref('stg_survey__driver_scores') }}

),

responses as (

    select response_id from {{ ref('fct_survey_responses') }}

)

-- Only items of responses in the response fact (same cut-off), so every row joins to a response.
select
    driver_scores.response_id,
    driver_scores.driver,
    driver_scores.score
from driver_scores
inner join responses
    on responses.response_id = driver_scores.response_id
