{% macro drop_dropped_orphans() -%}
    {#-
        Post-hook of dim_customers: on an incremental run, delete the tombstones the model wrote for
        the orphans no fact up to as_of mentions any more (their facts were re-delivered to another
        customer, or as_of moved back past them; the model's orphans CTE finds them in its scope).
        delete+insert can only replace a customer's row, never drop it, so the model writes such a
        customer again with is_orphan NULL, which no real row has (its not_null test), and this
        deletes it. It reads one column of the dimension: the lookup of every stored orphan in
        every fact table it replaced scanned the 22.6M activities at L on every run (2.8 thread-s).
        An orphan without a key (which no fact can name) is deleted as before. A full build writes
        no tombstone.
    -#}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where is_orphan is null
        or (is_orphan and customer_id is null)
    {%- endif -%}
{%- endmacro %}
