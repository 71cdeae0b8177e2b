with

source as (

    select * from {{ source('crm', 'reps') }}

),

versions as (

    select
        rep_id,
        team,
        manager_rep_id,
        active,
        _source_file,
        _delivery_seq,
        {{ latest_delivery_first('rep_id') }} as version_rank
    from source

)

select
    cast(rep_id as {{ dbt.type_string() }}) as rep_id,
    cast(team as {{ dbt.type_string() }}) as team,
    cast(manager_rep_id as {{ dbt.type_string() }}) as manager_rep_id,
    -- The contract's default: a rep delivered without the flag is active.
    cast(coalesce(active, true) as {{ dbt.type_boolean() }}) as active,
    _source_file,
    _delivery_seq
from versions
where version_rank = 1
