with

source as (

    select * from {{ source('crm', 'accounts') }}

),

versions as (

    select
        customer_id,
        segment,
        business_unit,
        industry,
        region,
        created_at,
        owner_rep_id,
        contact_email_key,
        updated_at,
        _source_file,
        _delivery_seq,
        -- The CRM's own updated_at orders versions of an account first; delivery order only
        -- breaks ties, because an older export can arrive after a newer one.
        row_number() over (
            partition by customer_id
            order by updated_at desc nulls last, _delivery_seq desc, _row_number desc
        ) as version_rank
    from source

)

select
    cast(customer_id as {{ dbt.type_string() }}) as customer_id,
    cast(segment as {{ dbt.type_string() }}) as segment,
    cast(business_unit as {{ dbt.type_string() }}) as business_unit,
    cast(industry as {{ dbt.type_string() }}) as industry,
    cast(region as {{ dbt.type_string() }}) as region,
    cast(created_at as {{ dbt.type_timestamp() }}) as created_at,
    cast(owner_rep_id as {{ dbt.type_string() }}) as owner_rep_id,
    -- The keyed hash ingestion computed; the address itself stays in the lake.
    cast(contact_email_key as {{ dbt.type_string() }}) as contact_email_key,
    cast(updated_at as {{ dbt.type_timestamp() }}) as updated_at,
    _source_file,
    _delivery_seq
from versions
where version_rank = 1
