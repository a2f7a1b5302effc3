"""The update-protocol benchmark run by scripts/bench_updates.py.

One module per concern: `client` (the CLI's HTTP layer), `resources` and `snapshot` (what a
`pulumi up` of RandomPets writes), `events` (engine-event uploads), `update` (one `pulumi up`
in journal or verbatim+delta mode), `server` and `databases` (the cairn process and the
backends it runs on), `workloads` (the measured runs) and `report` (figures and the table).
"""
