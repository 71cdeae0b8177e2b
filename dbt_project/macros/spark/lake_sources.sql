{#
    How an engine finds the lake. DuckDB needs nothing at run time: each source renders as the
    read_parquet() call of `meta.external_location` (dbt_project.yml). Spark has no such rendering,
    so before a run it registers every source of this project as a table over the same files
    (`meta.lake_path`, relative to <NPS_LINK_DATA_DIR>/lake), under the name dbt's source() renders
    on Spark: <source>.<table>.
#}

{% macro register_lake_sources() -%}
    {{ return(adapter.dispatch('register_lake_sources', 'nps_link')()) }}
{%- endmacro %}


{% macro default__register_lake_sources() -%}
    {#- Nothing to do: the sources already render as file scans. An empty hook is skipped by dbt. -#}
{%- endmacro %}


{% macro spark__register_lake_sources() -%}
    {%- if execute -%}
        {%- set lake_dir = env_var('NPS_LINK_DATA_DIR').rstrip('/') ~ '/lake' -%}
        {%- set databases = [] -%}
        {%- for node in graph.sources.values() if node.package_name == project_name -%}
            {%- set lake_path = node.config.meta.get('lake_path') or node.meta.get('lake_path') -%}
            {%- if not lake_path -%}
                {{ exceptions.raise_compiler_error("source " ~ node.source_name ~ "." ~ node.name ~ " has no meta.lake_path") }}
            {%- endif -%}
            {%- if node.schema not in databases -%}
                {%- do run_query('create database if not exists ' ~ node.schema) -%}
                {%- do databases.append(node.schema) -%}
            {%- endif -%}
            {#- Dropped and created, never altered: the schema is read from the files on every run, so a
                column added by a new delivery appears. Dropping an external table leaves its files. -#}
            {%- do run_query('drop table if exists ' ~ node.schema ~ '.' ~ node.identifier) -%}
            {#- mergeSchema: older deliveries may lack a column added later (DuckDB: union_by_name).
                Spark skips files whose names start with "_", so the lake's zero-row _schema.parquet
                cannot stand in for a table that has no delivery yet: such a table fails here. -#}
            {%- do run_query(
                "create table " ~ node.schema ~ "." ~ node.identifier
                ~ " using parquet options (path '" ~ lake_dir ~ "/" ~ lake_path ~ "', mergeSchema 'true')"
            ) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
