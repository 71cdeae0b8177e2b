with

manifest as (

    select * from {{ ref('stg_lake__load_manifest') }}

)

select
    source,
    file,
    sha256,
    size_bytes,
    delivery_seq,
    file_format,
    encoding,
    rows_read,
    rows_loaded,
    rows_quarantined,
    status,
    reason,
    rule_counts,
    extra_columns,
    missing_optional_columns,
    loaded_at,
    -- Every row read of a loaded file is either loaded or quarantined (contract); a gap means rows
    -- went missing. Rejected and duplicate files load nothing by design, so they have no gap.
    case
        when status = 'loaded'
            then coalesce(rows_read, 0) - coalesce(rows_loaded, 0) - coalesce(rows_quarantined, 0)
    end as rows_unaccounted
from manifest
