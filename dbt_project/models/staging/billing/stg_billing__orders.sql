{{
    config(
        materialized=incremental_materialization(),
        unique_key='order_id',
        incremental_strategy='delete+insert',
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
        {{ latest_delivery_first('order_id') }} as version_rank
    from source

)

select
    cast(order_id as {{ dbt.type_string() }}) as order_id,
    cast(customer_id as {{ dbt.type_string() }}) as customer_id,
    cast(ordered_at as {{ dbt.type_timestamp() }}) as ordered_at,
    cast(amount as decimal(20, 4)) as amount,
    -- The contract's defaults for optional columns: JPY, and an order without status is completed.
    cast(upper(coalesce(currency, 'JPY')) as {{ dbt.type_string() }}) as currency,
    cast(coalesce(status, 'completed') as {{ dbt.type_string() }}) as status,
    cast(product_line as {{ dbt.type_string() }}) as product_line,
    _source_file,
    _delivery_seq
from versions
where version_rank = 1
