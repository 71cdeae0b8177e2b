{{
    config(
        materialized=incremental_materialization(),
        unique_key='response_id',
        incremental_strategy='replace_staged_versions',
        on_schema_change='append_new_columns',
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
        {{ latest_delivery_first('response_id') }} as version_rank,
        min(_delivery_seq) over (partition by response_id) as first_delivery_seq
    from source

)

select
    cast(versions.response_id as {{ dbt.type_string() }}) as response_id,
    cast(versions.survey_type as {{ dbt.type_string() }}) as survey_type,
    cast(versions.customer_id as {{ dbt.type_string() }}) as customer_id,
    cast(versions.touchpoint as {{ dbt.type_string() }}) as touchpoint,
    cast(versions.responded_at as {{ dbt.type_timestamp() }}) as responded_at,
    cast(versions.nps_score as {{ dbt.type_int() }}) as nps_score,
    -- Free text may name people (contract pii: possible); it is kept for detractor follow-up only.
    cast(versions.comment as {{ dbt.type_string() }}) as comment,
    -- The keyed hash ingestion computed; the address itself stays in the lake.
    cast(versions.respondent_email_key as {{ dbt.type_string() }}) as respondent_email_key,
    versions._source_file,
    versions._delivery_seq,
    {{ first_delivery_seq('versions', 'response_id') }} as _first_delivery_seq
from versions
{{- join_staged_version('versions', 'response_id') }}
where versions.version_rank = 1
