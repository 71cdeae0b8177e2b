{% macro key_hash(column) -%}
    {#- A 64-bit (DuckDB) or 32-bit (Spark) hash of a key: equal keys hash equally, so two rows with
        different hashes are different keys; equal hashes may still be different keys. -#}
    hash({{ column }})
{%- endmacro %}


{% macro repeated_key_hashes(rows, key) -%}
    {#-
        A select of `key_hash`: the hash of every `key` that occurs more than once in the select
        `rows` (and of any two keys that happen to share a hash; callers treat those as repeated,
        which is only slower, never wrong). Almost every key is delivered once, so this set is
        tiny and the rest of the rows can skip the per-key window.
    -#}
    {{ return(adapter.dispatch('repeated_key_hashes', 'nps_link')(rows, key)) }}
{%- endmacro %}

{% macro default__repeated_key_hashes(rows, key) -%}
    select {{ key_hash(key) }} as key_hash
    from ({{ rows }}) as keyed_rows
    group by {{ key_hash(key) }}
    having count(*) > 1
{%- endmacro %}

{% macro duckdb__repeated_key_hashes(rows, key) -%}
    {#- Neighbours in hash order: one sort of a 64-bit integer column costs half the CPU of a hash
        aggregate with a group per key (22.6M groups at L). Scales only on one machine, hence DuckDB only. -#}
    select key_hash
    from (
        select
            key_hash,
            lag(key_hash) over (order by key_hash) as previous_key_hash
        from (
            {#- The hash alone, before the window: over the hash expression the window sorts the
                key itself along with it (1.4 s against 3-4 s for the 22.6M activity ids at L). -#}
            select {{ key_hash(key) }} as key_hash
            from ({{ rows }}) as keyed_rows
        ) as hashed
    ) as neighbours
    where key_hash = previous_key_hash
{%- endmacro %}
