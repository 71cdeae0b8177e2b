{#- Incremental by customer (macros/incremental.sql): a run rebuilds the customers whose account,
    facts or onboarding can have changed; an orphan whose every fact left (re-delivered to another
    customer, or after an earlier as_of) is written as a tombstone, which the post-hook deletes. -#}
{{
    config(
        materialized=incremental_materialization(),
        unique_key='customer_id',
        incremental_strategy='delete+insert',
        post_hook="{{ drop_dropped_orphans() }}",
    )
}}
-- depends_on: {{ ref('stg_billing__orders') }}

with

run_parameters as (

    select as_of_at, input_seq from {{ ref('int_run_parameters') }}

),

{% if is_incremental() -%}
built as (

    {{ stored_cut_offs() }}

),

cut_off_window as (

    select
        least(built.min_as_of_at, run_parameters.as_of_at) as lo,
        greatest(built.max_as_of_at, run_parameters.as_of_at) as hi
    from built
    cross join run_parameters

),

-- Reps delivered since whose team is new or differs from the one staged before (the team decides the
-- hand-off). A roster delivered again unchanged, as a daily full export is, changes no customer; the
-- team staged before is the version stg_crm__reps ranked first among the earlier deliveries.
changed_reps as (

    select delivered.rep_id
    from {{ ref('stg_crm__reps') }} as delivered
    left join (
        select
            rep_id,
            team,
            {{ latest_delivery_first('rep_id') }} as version_rank
        from {{ source('crm', 'reps') }}
        where _delivery_seq <= {{ delivery_watermark() }}
    ) as staged_before
        on staged_before.rep_id = delivered.rep_id
        and staged_before.version_rank = 1
    where delivered._delivery_seq > {{ delivery_watermark() }}
        and (staged_before.rep_id is null or staged_before.team is distinct from delivered.team)

),

-- Customers whose row can have changed: a new delivery of their account or facts, a fact between
-- their stored cut-off and this one, a first week that ends between them (outbound_contacts_first_7d is
-- NULL until it is over), or a contact by a rep whose team changed since (the team decides the hand-off).
scope as (

    {{ customers_delivered_since(delivery_watermark(), ['activities', 'responses', 'orders', 'accounts']) }}
    union
    -- A fact between the customer's own stored cut-off and this one (a stored row is exact for its
    -- cut-off; the table-wide window only prunes), or of a customer not stored yet.
    select facts.customer_id
    from (
        select customer_id, occurred_at as fact_at from {{ ref('stg_crm__activities') }}
        union all
        select customer_id, responded_at as fact_at from {{ ref('stg_survey__responses') }}
        union all
        select customer_id, ordered_at as fact_at from {{ ref('int_orders_converted') }}
    ) as facts
    cross join cut_off_window
    cross join run_parameters
    left join {{ this }} as stored
        on stored.customer_id = facts.customer_id
    where facts.fact_at > cut_off_window.lo
        and facts.fact_at <= cut_off_window.hi
        and (
            stored.customer_id is null
            or (facts.fact_at > least(stored._as_of_at, run_parameters.as_of_at)
                and facts.fact_at <= greatest(stored._as_of_at, run_parameters.as_of_at))
        )
    union
    select stored.customer_id
    from {{ this }} as stored
    cross join run_parameters
    where {{ dbt.dateadd('day', 7, 'stored.first_order_at') }} > least(stored._as_of_at, run_parameters.as_of_at)
        and {{ dbt.dateadd('day', 7, 'stored.first_order_at') }} <= greatest(stored._as_of_at, run_parameters.as_of_at)
    union
    select customer_id from {{ ref('stg_crm__activities') }}
    where rep_id in (select rep_id from changed_reps)

),

{% endif -%}
accounts as {{ inlined_on_full_build() }} (

    select * from {{ ref('stg_crm__accounts') }}
    where true
        {{- customer_in_incremental_scope('customer_id') }}

),

activities as {{ inlined_on_full_build() }} (

    select activities.customer_id, activities.rep_id, activities.direction, activities.occurred_at
    from {{ ref('stg_crm__activities') }} as activities
    cross join run_parameters
    where activities.occurred_at <= run_parameters.as_of_at
        {{- customer_in_incremental_scope('activities.customer_id') }}

),

responses as {{ inlined_on_full_build() }} (

    select responses.customer_id
    from {{ ref('stg_survey__responses') }} as responses
    cross join run_parameters
    where responses.responded_at <= run_parameters.as_of_at
        {{- customer_in_incremental_scope('responses.customer_id') }}

),

orders as {{ inlined_on_full_build() }} (

    select orders.customer_id, orders.is_purchase, orders.ordered_at
    from {{ ref('int_orders_converted') }} as orders
    cross join run_parameters
    where orders.ordered_at <= run_parameters.as_of_at
        {{- customer_in_incremental_scope('orders.customer_id') }}

),

reps as (

    select rep_id, team from {{ ref('stg_crm__reps') }}

),

-- Customers that facts mention: those without an account are orphans, kept so no fact loses its
-- customer (dimensions often arrive later than facts).
fact_customers as (

    select customer_id from activities
    union
    select customer_id from responses
    union
    select customer_id from orders

),

orphans as (

    select fact_customers.customer_id, true as is_orphan
    from fact_customers
    left join accounts
        on accounts.customer_id = fact_customers.customer_id
    where accounts.customer_id is null
    {%- if is_incremental() %}
    union all
    -- A tombstone (is_orphan NULL, which no real row has) for each stored orphan of the run's scope
    -- that no fact up to as_of mentions any more: its facts were re-delivered to another customer
    -- (scope holds a re-delivered fact's previous customer) or as_of moved back past them (scope
    -- holds every customer with a fact between the two cut-offs). delete+insert replaces the stored
    -- row with it, and the post-hook deletes it (macros/dims.sql drop_dropped_orphans).
    select stored.customer_id, cast(null as {{ dbt.type_boolean() }}) as is_orphan
    from {{ this }} as stored
    left join fact_customers
        on fact_customers.customer_id = stored.customer_id
    left join accounts
        on accounts.customer_id = stored.customer_id
    where stored.is_orphan
        and fact_customers.customer_id is null
        and accounts.customer_id is null
        {{- customer_in_incremental_scope('stored.customer_id') }}
    {%- endif %}

),

first_orders as (

    select customer_id, min(ordered_at) as first_order_at
    from orders
    where is_purchase
    group by customer_id

),

-- The first week after the first order and the hand-off to account management, both read from
-- outbound contacts only: they are what the company chose to do.
onboarding as (

    select
        first_orders.customer_id,
        cast(sum(
            case
                when activities.occurred_at < {{ dbt.dateadd('day', 7, 'first_orders.first_order_at') }} then 1
                else 0
            end
        ) as {{ dbt.type_bigint() }}) as contacts_first_7d,
        -- A lookup in the few account-management reps, not a join of every contact to the roster:
        -- DuckDB built that join's hash table on the 17M contacts (3.8 GB at L, next to the other
        -- model dbt runs beside this one).
        min(
            case
                when activities.rep_id in (select rep_id from reps where team = 'account_management')
                    then activities.occurred_at
            end
        ) as first_account_management_contact_at
    from first_orders
    inner join activities
        on activities.customer_id = first_orders.customer_id
        and activities.direction = 'outbound'
        and activities.occurred_at >= first_orders.first_order_at
    group by first_orders.customer_id

),

customers as (

    select
        customer_id,
        segment,
        business_unit,
        industry,
        region,
        created_at,
        owner_rep_id,
        contact_email_key,
        false as is_orphan
    from accounts
    union all
    select
        customer_id,
        cast(null as {{ dbt.type_string() }}) as segment,
        cast(null as {{ dbt.type_string() }}) as business_unit,
        cast(null as {{ dbt.type_string() }}) as industry,
        cast(null as {{ dbt.type_string() }}) as region,
        cast(null as {{ dbt.type_timestamp() }}) as created_at,
        cast(null as {{ dbt.type_string() }}) as owner_rep_id,
        cast(null as {{ dbt.type_string() }}) as contact_email_key,
        is_orphan
    from orphans

)

select
    customers.customer_id,
    customers.segment,
    customers.business_unit,
    customers.industry,
    customers.region,
    customers.created_at,
    customers.owner_rep_id,
    customers.contact_email_key,
    customers.is_orphan,
    first_orders.first_order_at,
    -- NULL until the first week is over at as_of, so a half-observed week never reads as "few contacts".
    case
        when first_orders.first_order_at is null then null
        when {{ dbt.dateadd('day', 7, 'first_orders.first_order_at') }} > run_parameters.as_of_at then null
        else coalesce(onboarding.contacts_first_7d, 0)
    end as outbound_contacts_first_7d,
    onboarding.first_account_management_contact_at,
    {{ days_between('first_orders.first_order_at', 'onboarding.first_account_management_contact_at') }}
        as handoff_days,
    run_parameters.as_of_at as _as_of_at,
    run_parameters.input_seq as _input_seq,
    {{ run_parameters_key() }} as _parameters
from customers
cross join run_parameters
left join first_orders
    on first_orders.customer_id = customers.customer_id
left join onboarding
    on onboarding.customer_id = customers.customer_id
