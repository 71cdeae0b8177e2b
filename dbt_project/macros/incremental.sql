{#
    Bookkeeping of the incremental models (docs: BENCHMARKS.md "Incremental design").

    Every lake row carries `_delivery_seq`, a number that grows with every delivered file. An
    incremental model stores, on each row it writes, the highest delivery its inputs held then
    (`_input_seq`, from int_run_parameters), the run's cut-off (`_as_of_at`) and the run parameters (`_parameters`). The next
    run recomputes exactly the rows those can have changed; `dbt build --full-refresh` recomputes
    everything and gives the same tables (tests/orchestration/test_incremental.py).
    On engines other than DuckDB the models are plain tables (always a full rebuild).
#}

{% macro incremental_materialization() -%}
    {{ return('incremental' if target.type == 'duckdb' else 'table') }}
{%- endmacro %}


{% macro only_new_deliveries() -%}
    {#-
        The filter of an incremental staging model's source: only deliveries newer than any staged row.
        They outrank every staged version of their key, so delete+insert on the key replaces that
        version, exactly as a full refresh's "latest delivery wins" would (Parquet statistics skip
        the older files). Empty on a full build.
    -#}
    {%- if is_incremental() %}
    where _delivery_seq > (select coalesce(max(_delivery_seq), 0) from {{ this }})
    {%- endif %}
{%- endmacro %}


{% macro delivery_watermark() -%}
    {#- The highest delivery this model has absorbed: every later delivery is new to it. -#}
    (select coalesce(max(_input_seq), 0) from {{ this }})
{%- endmacro %}


{% macro run_parameters_key() -%}
    {#- Every var a stored row depends on besides as_of; a row built with other values is recomputed. -#}
    '{{ var("reporting_tz") }}|{{ var("reporting_currency") }}|{{ var("contact_window_days") }}|{{ var("repeat_window_days") }}|{{ var("revenue_window_days") }}'
{%- endmacro %}


{% macro stored_cut_offs() -%}
    {#- One row about what an incremental model by customer stores: the oldest and newest cut-off its
        rows were built with, and recompute_all = 1 when every customer must be rebuilt (nothing
        stored yet, a parameter changed, or a cut-off is unknown). Needs a `run_parameters` CTE. -#}
    select
        min(built._as_of_at) as min_as_of_at,
        max(built._as_of_at) as max_as_of_at,
        case
            when count(*) = 0
                or count(case when built._parameters <> {{ run_parameters_key() }} or built._as_of_at is null then 1 end) > 0
                or max(run_parameters.as_of_at) is null
                then 1
            else 0
        end as recompute_all
    from {{ this }} as built
    cross join run_parameters
{%- endmacro %}


{% macro customers_delivered_since(watermark, inputs) -%}
    {#-
        A select of customer_id: every customer whose rows of `inputs` (any of 'activities',
        'responses', 'orders', 'accounts') got a delivery after `watermark`, and the customer a
        re-delivered activity, response or order belonged to before (a row that moved to another
        customer changes the old one's figures too; staging keeps only the newest version, so the
        older one is read from the lake, and only for keys staging says were delivered before,
        `_first_delivery_seq`).
    -#}
    {%- set staged = {
        'activities': (ref('stg_crm__activities') if 'activities' in inputs else none, source('crm', 'activities'), 'activity_id'),
        'responses': (ref('stg_survey__responses') if 'responses' in inputs else none, source('survey', 'responses'), 'response_id'),
        'orders': (ref('int_orders_converted') if 'orders' in inputs else none, source('billing', 'orders'), 'order_id'),
        'accounts': (ref('stg_crm__accounts') if 'accounts' in inputs else none, none, none),
    } -%}
    {%- for name in inputs %}
    {%- set model, lake, key = staged[name] %}
    {% if not loop.first %}union{% endif %}
    select customer_id from {{ model }} where _delivery_seq > {{ watermark }}
    {%- if lake is not none %}
    union
    select previous.customer_id
    from {{ lake }} as previous
    where previous._delivery_seq <= {{ watermark }}
        and previous.{{ key }} in (
            select {{ key }} from {{ model }}
            where _delivery_seq > {{ watermark }}
                -- Only keys delivered before: on a usual day there are none, and the lake (20M+
                -- activities, 2M responses, 3M orders at L) is not read at all.
                and _first_delivery_seq <= {{ watermark }}
        )
    {%- endif %}
    {%- endfor %}
{%- endmacro %}


{% macro join_staged_version(batch, key) -%}
    {#- In an incremental staging model's final select: the staged row of each key in `batch` (the
        relation holding this run's winning versions), as `staged`, for `first_delivery_seq`. -#}
    {%- if is_incremental() %}
left join {{ this }} as staged
    on staged.{{ key }} = {{ batch }}.{{ key }}
    {%- endif %}
{%- endmacro %}


{% macro first_delivery_seq(batch, key) -%}
    {#-
        A staging model's `_first_delivery_seq`: the first delivery that held the key. When it is older
        than the current version's, the key was re-delivered, and the incremental models look up the
        customer it belonged to before in the lake (customers_delivered_since). `batch` has the
        batch's own first delivery of the key as `first_delivery_seq`; on an incremental run a key
        staged already was delivered before this batch (`staged`, from join_staged_version). A
        warehouse staged before the column existed gets it (on_schema_change), NULL on its old rows,
        read as "delivered before any watermark".
    -#}
    {%- if is_incremental() -%}
    {%- set staged_has_first_seq = '_first_delivery_seq' in adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
    case
        when staged.{{ key }} is null then {{ batch }}.first_delivery_seq
        else {{ 'coalesce(staged._first_delivery_seq, 0)' if staged_has_first_seq else '0' }}
    end
    {%- else -%}
    {{ batch }}.first_delivery_seq
    {%- endif -%}
{%- endmacro %}


{% macro customer_in_incremental_scope(column) -%}
    {#- On an incremental run, an extra filter keeping the customers of the model's `scope` CTE
        (or everyone when its `built` CTE says recompute_all); nothing on a full build. -#}
    {%- if is_incremental() %}
        and ({{ column }} in (select customer_id from scope) or (select recompute_all from built) = 1)
    {%- endif %}
{%- endmacro %}


{% macro empty_customer_months_when_all_change() -%}
    {#-
        Pre-hook of int_customer_months_densified: on an incremental run, delete every stored row when
        all customers' months change: other parameters, another as_of month (every dense range gets or
        loses a month), or an earlier as_of (customers whose every event is later disappear, and
        delete+insert can only replace rows, not drop a customer). The model then rebuilds them all.
    -#}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where exists (
        select 1
        from {{ this }} as built
        cross join {{ ref('int_run_parameters') }} as run_parameters
        where built._parameters <> {{ run_parameters_key() }}
            or built._as_of_at is null
            or run_parameters.as_of_at is null
            or built._as_of_at > run_parameters.as_of_at
            or {{ reporting_month('built._as_of_at') }} <> {{ reporting_month('run_parameters.as_of_at') }}
    )
    {%- endif -%}
{%- endmacro %}


{% macro drop_rows_after_as_of(column) -%}
    {#- Pre-hook of an incremental model keyed by fact: on an incremental run, delete the stored rows
        whose `column` is after this run's as_of (as_of moved back). delete+insert can only replace rows. -#}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where {{ column }} > (select as_of_at from {{ ref('int_run_parameters') }})
    {%- endif -%}
{%- endmacro %}


{% macro latest_delivery_first(key, rank_function='row_number') -%}
    {#-
        The rank of each delivered version of `key`, 1 for the one that wins: the latest delivery,
        and within a file the last row ("latest delivery wins", DESIGN.md). One definition for the
        staging models and for dim_customers' look at the roster as staged before a new delivery,
        so the two cannot disagree. `dense_rank` gives every row of the winning version rank 1
        (the driver scores: one version is several rows with one _row_number).
    -#}
    {{ rank_function }}() over (partition by {{ key }} order by _delivery_seq desc, _row_number desc)
{%- endmacro %}


{% macro get_incremental_replace_staged_versions_sql(arg_dict) -%}
    {#-
        The incremental strategy of the staging models of facts (activities, responses, orders):
        delete+insert on the key, deleting only the staged rows of keys staged before. Those are the
        batch's keys whose `_first_delivery_seq` is not after the newest staged delivery (every other
        key's first delivery is in this batch), so it deletes exactly what delete+insert would. On a
        usual day no key was staged before, the list is empty and DuckDB does not scan the staged
        table (22.6M activities at L, about half a second) to delete nothing.
    -#}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set key = arg_dict['unique_key'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ target }}
    where {{ key }} in (
        select {{ key }} from {{ source }}
        where _first_delivery_seq <= (select coalesce(max(_delivery_seq), 0) from {{ target }})
    );

    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ source }}
{%- endmacro %}
