"""The imperative shell: services, supervisor, recovery, journal, networking and images.

Rule: carries out the core's plans through the driver Protocols and appends their outcomes;
imports core, drivers, events and projections; never the API or the CLI.
"""
