"""Parts of the demo-data generator: planted model, simulation, truth, tables and file writers.

The public entry points live in `orchestration.lib.demo_data`.
"""
