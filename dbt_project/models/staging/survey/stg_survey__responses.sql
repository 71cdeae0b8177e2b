{{
    config(
        materialized=incremental_materialization(),
        unique_key='response_id',
        incremental_strategy='delete+insert',
    )
}}

with

source as (

    select * from {{ source('survey', 'responses') }}
    {{- only_new_deliveries() }}

),

versions as (

    select
        response_id,
        survey_type,
        customer_id,
        touchpoint,
        responded_at,
        nps_score,
        comment,
        respondent_email_key,
        _source_file,
        _delivery_seq,
        {{ latest_delivery_first('response_id') }} as version_rank
    from source

)

select
    cast(response_id as {{ dbt.type_string() }}) as response_id,
    cast(survey_type as {{ dbt.type_string() }}) as survey_type,
    cast(customer_id as {{ dbt.type_string() }}) as customer_id,
    cast(touchpoint as {{ dbt.type_string() }}) as touchpoint,
    cast(responded_at as {{ dbt.type_timestamp() }}) as responded_at,
    cast(nps_score as {{ dbt.type_int() }}) as nps_score,
    -- Free text may name people (contract pii: possible); it is kept for detractor follow-up only.
    cast(comment as {{ dbt.type_string() }}) as comment,
    -- The keyed hash ingestion computed; the address itself stays in the lake.
    cast(respondent_email_key as {{ dbt.type_string() }}) as respondent_email_key,
    _source_file,
    _delivery_seq
from versions
where version_rank = 1
