{{
    config(
        materialized=incremental_materialization(),
        unique_key='order_id',
        incremental_strategy='replace_staged_versions',
        on_schema_change='append_new_columns',
    )
}}

with

source as (

    select * from {{ source('billing', 'orders') }}
    {{- only_new_deliveries() }}

),

versions as (

    select
        order_id,
        customer_id,
        ordered_at,
        amount,
        currency,
        status,
        product_line,
        _source_file,
        _delivery_seq,
        {{ latest_delivery_first('order_id') }} as version_rank,
        min(_delivery_seq) over (partition by order_id) as first_delivery_seq
    from source

)

select
    cast(versions.order_id as {{ dbt.type_string() }}) as order_id,
    cast(versions.customer_id as {{ dbt.type_string() }}) as customer_id,
    cast(versions.ordered_at as {{ dbt.type_timestamp() }}) as ordered_at,
    cast(versions.amount as decimal(20, 4)) as amount,
    -- The contract's defaults for optional columns: JPY, and an order without status is completed.
    cast(upper(coalesce(versions.currency, 'JPY')) as {{ dbt.type_string() }}) as currency,
    cast(coalesce(versions.status, 'completed') as {{ dbt.type_string() }}) as status,
    cast(versions.product_line as {{ dbt.type_string() }}) as product_line,
    versions._source_file,
    versions._delivery_seq,
    {{ first_delivery_seq('versions', 'order_id') }} as _first_delivery_seq
from versions
{{- join_staged_version('versions', 'order_id') }}
where versions.version_rank = 1
