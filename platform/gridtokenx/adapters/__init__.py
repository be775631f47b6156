"""The platform's I/O adapters: the SQL behind the services (repositories) and the wiring
of the outside world (ledger, events, grid view)."""
