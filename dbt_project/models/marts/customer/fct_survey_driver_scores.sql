{#- The as_of cut-off, a literal on DuckDB so that the view plans well (macros/cut_off.sql). -#}
{%- set as_of_at = as_of_cut_off() -%}
{#- A view: the items are stored once, in staging (incremental); a table here would rewrite
    every item of the history on every run. -#}
{{ config(materialized='view') }}

with

driver_scores as (

    select * from {{ ref('stg_survey__driver_scores') }}

),

responses as (

    select * from {{ ref('stg_survey__responses') }}

)

-- Items of the responses in fct_survey_responses (same cut-off), and only from the delivery whose
-- version of the response won: a re-delivered response without ratings must not keep old ones.
select
    driver_scores.response_id,
    driver_scores.driver,
    driver_scores.score,
    -- Bookkeeping, not analysis: the delivery the row (and its response) came from, which scopes
    -- the grain test of an incremental run to the rows delivered since the last publish
    -- (macros/test_scope.sql).
    driver_scores._delivery_seq
from driver_scores
inner join responses
    on responses.response_id = driver_scores.response_id
    and responses._delivery_seq = driver_scores._delivery_seq
where responses.responded_at <= {{ as_of_at }}
