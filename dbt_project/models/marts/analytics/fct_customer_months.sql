{#- A view: the rows live in int_customer_months_densified, which an incremental run updates only for
    the customers whose months can have changed; a table here would rewrite every row every day. -#}
{{ config(materialized='view') }}

select
    customer_id,
    month,
    contacts,
    inbound_contacts,
    responses,
    avg_nps_score,
    revenue,
    orders,
    -- Bookkeeping, not analysis: the run that last wrote the customer's months, which scopes the
    -- grain test of an incremental run to the customers it rewrote (macros/test_scope.sql).
    _input_seq
from {{ ref('int_customer_months_densified') }}
