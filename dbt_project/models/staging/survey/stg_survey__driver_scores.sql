{{
    config(
        materialized=incremental_materialization(),
        unique_key='response_id',
        incremental_strategy='delete+insert',
    )
}}

with

source as (

    select * from {{ source('survey', 'driver_scores') }}
    {{- only_new_deliveries() }}

),

versions as (

    select
        response_id,
        driver,
        score,
        _source_file,
        _delivery_seq,
        -- A response's driver items come from the same source row as the response itself, so the
        -- whole set of the latest delivered row wins: an item dropped by a re-delivery disappears.
        {{ latest_delivery_first('response_id', 'dense_rank') }} as version_rank
    from source

)

select
    cast(response_id as {{ dbt.type_string() }}) as response_id,
    cast(driver as {{ dbt.type_string() }}) as driver,
    cast(score as {{ dbt.type_int() }}) as score,
    _source_file,
    _delivery_seq
from versions
where version_rank = 1
