{{
    config(
        materialized=incremental_materialization(),
        unique_key='activity_id',
        incremental_strategy='delete+insert',
    )
}}

with

source as (

    select * from {{ source('crm', 'activities') }}
    {{- only_new_deliveries() }}

),

versions as (

    select
        activity_id,
        customer_id,
        rep_id,
        activity_type,
        direction,
        occurred_at,
        duration_minutes,
        _source_file,
        _delivery_seq,
        row_number() over (
            partition by activity_id
            order by _delivery_seq desc, _row_number desc
        ) as version_rank
    from source

)

select
    cast(activity_id as {{ dbt.type_string() }}) as activity_id,
    cast(customer_id as {{ dbt.type_string() }}) as customer_id,
    cast(rep_id as {{ dbt.type_string() }}) as rep_id,
    cast(activity_type as {{ dbt.type_string() }}) as activity_type,
    cast(direction as {{ dbt.type_string() }}) as direction,
    cast(occurred_at as {{ dbt.type_timestamp() }}) as occurred_at,
    cast(duration_minutes as {{ type_double() }}) as duration_minutes,
    _source_file,
    _delivery_seq
from versions
where version_rank = 1
