with

source as (

    select * from {{ source('lake', 'load_manifest') }}

)

select
    cast(source as {{ dbt.type_string() }}) as source,
    cast(file as {{ dbt.type_string() }}) as file,
    cast(sha256 as {{ dbt.type_string() }}) as sha256,
    cast(size_bytes as {{ dbt.type_bigint() }}) as size_bytes,
    cast(delivery_seq as {{ dbt.type_bigint() }}) as delivery_seq,
    cast(file_format as {{ dbt.type_string() }}) as file_format,
    cast(encoding as {{ dbt.type_string() }}) as encoding,
    cast(rows_read as {{ dbt.type_bigint() }}) as rows_read,
    cast(rows_loaded as {{ dbt.type_bigint() }}) as rows_loaded,
    cast(rows_quarantined as {{ dbt.type_bigint() }}) as rows_quarantined,
    cast(status as {{ dbt.type_string() }}) as status,
    cast(reason as {{ dbt.type_string() }}) as reason,
    cast(rule_counts as {{ dbt.type_string() }}) as rule_counts,
    cast(extra_columns as {{ dbt.type_string() }}) as extra_columns,
    cast(missing_optional_columns as {{ dbt.type_string() }}) as missing_optional_columns,
    cast(loaded_at as {{ dbt.type_timestamp() }}) as loaded_at
from source
