with

reps as (

    select * from {{ ref('stg_crm__reps') }}

),

activities as (

    select rep_id from {{ ref('stg_crm__activities') }}

),

accounts as (

    select owner_rep_id from {{ ref('stg_crm__accounts') }}

),

-- Reps referenced anywhere (as contact, owner or manager) but never delivered: kept as orphans so
-- follow-ups and hand-off analysis do not lose them.
referenced_reps as (

    select rep_id from activities where rep_id is not null
    union
    select owner_rep_id as rep_id from accounts where owner_rep_id is not null
    union
    select manager_rep_id as rep_id from reps where manager_rep_id is not null

),

orphans as (

    select referenced_reps.rep_id
    from referenced_reps
    left join reps
        on reps.rep_id = referenced_reps.rep_id
    where reps.rep_id is null

)

select
    rep_id,
    team,
    manager_rep_id,
    active,
    false as is_orphan
from reps
union all
select
    rep_id,
    cast(null as {{ dbt.type_string() }}) as team,
    cast(null as {{ dbt.type_string() }}) as manager_rep_id,
    cast(null as {{ dbt.type_boolean() }}) as active,
    true as is_orphan
from orphans
