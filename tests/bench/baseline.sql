-- Raw-DuckDB baseline of the benchmark: the pipeline's core joins written directly in SQL over the
-- same lake Parquet files dbt reads, with the same definitions (DESIGN.md "Metric definitions"):
-- latest delivery per key, outbound/inbound contacts in the 90 days before a response, exposure days,
-- repeat within 90 days (censored at as_of), revenue 365 days either side, and the dense
-- customer x month table. No tests, no orchestration: the floor the pipeline is compared with.
-- {lake} is replaced by the lake directory, {seed} by dbt's fx seed CSV (JPY per unit; reporting JPY); Tokyo is UTC+9 with no daylight saving, as in to_reporting_tz.

create or replace table activities as
select activity_id, customer_id, direction, occurred_at
from read_parquet('{lake}/raw/crm_activities/*.parquet', union_by_name = true)
qualify row_number() over (partition by activity_id order by _delivery_seq desc, _row_number desc) = 1;

create or replace table responses as
select response_id, customer_id, survey_type, touchpoint, responded_at, nps_score
from read_parquet('{lake}/raw/survey_responses/*.parquet', union_by_name = true)
qualify row_number() over (partition by response_id order by _delivery_seq desc, _row_number desc) = 1;

create or replace table orders as
select order_id, customer_id, ordered_at, coalesce(status, 'completed') as status,
    cast(amount as double) * fx.rate as amount_reporting,
    coalesce(status, 'completed') = 'completed' and amount >= 0 as is_purchase
from read_parquet('{lake}/raw/orders/*.parquet', union_by_name = true) as o
left join read_csv('{seed}') as fx
    on fx.currency = upper(coalesce(o.currency, 'JPY'))
qualify row_number() over (partition by order_id order by _delivery_seq desc, _row_number desc) = 1;

create or replace table accounts as
select customer_id, created_at
from read_parquet('{lake}/raw/crm_accounts/*.parquet', union_by_name = true)
qualify row_number() over (
    partition by customer_id order by updated_at desc nulls last, _delivery_seq desc, _row_number desc
) = 1;

create or replace table as_of as
select max(t) as as_of_at from (
    select max(occurred_at) as t from activities
    union all select max(responded_at) from responses
    union all select max(ordered_at) from orders
);

create or replace table fct_survey_responses as
with contacts as (
    select r.response_id,
        count(*) filter (where a.direction = 'outbound') as contacts_before,
        count(*) filter (where a.direction = 'inbound') as inbound_before
    from responses as r
    join activities as a
        on a.customer_id = r.customer_id
        and a.occurred_at >= r.responded_at - interval 90 day
        and a.occurred_at < r.responded_at
    group by r.response_id
),
around as (
    select r.response_id,
        max(case when o.is_purchase and o.ordered_at > r.responded_at
            and o.ordered_at <= r.responded_at + interval 90 day then 1 else 0 end) as has_repeat,
        sum(case when o.ordered_at >= r.responded_at - interval 365 day and o.ordered_at < r.responded_at
            then o.amount_reporting end) as revenue_prior,
        sum(case when o.ordered_at > r.responded_at and o.ordered_at <= r.responded_at + interval 365 day
            then o.amount_reporting end) as revenue_next
    from responses as r
    join orders as o
        on o.customer_id = r.customer_id
        and o.status = 'completed'
        and o.ordered_at <= (select as_of_at from as_of)
        and o.ordered_at >= r.responded_at - interval 365 day
        and o.ordered_at <= r.responded_at + interval 365 day
    group by r.response_id
)
select r.response_id, r.customer_id, r.survey_type, r.touchpoint, r.responded_at, r.nps_score,
    coalesce(c.contacts_before, 0) as contacts_before,
    coalesce(c.inbound_before, 0) as inbound_before,
    case when acc.created_at is null then 90.0
        else greatest(1.0, least(90.0, (epoch_us(r.responded_at) - epoch_us(acc.created_at)) / 86400e6)) end
        as exposure_days,
    case when r.responded_at + interval 90 day > (select as_of_at from as_of) then null
        else coalesce(ar.has_repeat, 0) end as repeat_after,
    coalesce(ar.revenue_prior, 0) as revenue_prior_365d,
    case when r.responded_at + interval 365 day > (select as_of_at from as_of) then null
        else coalesce(ar.revenue_next, 0) end as revenue_next_365d
from responses as r
left join contacts as c on c.response_id = r.response_id
left join around as ar on ar.response_id = r.response_id
left join accounts as acc on acc.customer_id = r.customer_id
where r.responded_at <= (select as_of_at from as_of);

create or replace table fct_customer_months as
with events as (
    select customer_id, date_trunc('month', occurred_at + interval 9 hour)::date as month,
        (direction = 'outbound')::int as contacts, (direction = 'inbound')::int as inbound_contacts,
        0 as responses, null::double as nps_score, 0.0 as revenue, 0 as orders
    from activities where occurred_at <= (select as_of_at from as_of)
    union all
    select customer_id, date_trunc('month', responded_at + interval 9 hour)::date, 0, 0, 1, nps_score, 0.0, 0
    from responses where responded_at <= (select as_of_at from as_of)
    union all
    select customer_id, date_trunc('month', ordered_at + interval 9 hour)::date, 0, 0, 0, null, amount_reporting,
        case when is_purchase then 1 else 0 end
    from orders where status = 'completed' and ordered_at <= (select as_of_at from as_of)
),
monthly as (
    select customer_id, month, sum(contacts) as contacts, sum(inbound_contacts) as inbound_contacts,
        sum(responses) as responses, avg(nps_score) as avg_nps_score, sum(revenue) as revenue,
        sum(orders) as orders
    from events group by customer_id, month
),
first_months as (
    select customer_id, min(month) as first_month from (
        select customer_id, month from monthly
        union all
        select customer_id, date_trunc('month', created_at + interval 9 hour)::date from accounts
        where created_at <= (select as_of_at from as_of)
    ) group by customer_id
),
months as (
    select unnest(generate_series(
        (select min(first_month) from first_months),
        (select date_trunc('month', as_of_at + interval 9 hour)::date from as_of),
        interval 1 month))::date as month
)
select f.customer_id, m.month,
    coalesce(x.contacts, 0) as contacts, coalesce(x.inbound_contacts, 0) as inbound_contacts,
    coalesce(x.responses, 0) as responses, x.avg_nps_score,
    coalesce(x.revenue, 0.0) as revenue, coalesce(x.orders, 0) as orders
from first_months as f
join months as m on m.month >= f.first_month
left join monthly as x on x.customer_id = f.customer_id and x.month = m.month;
