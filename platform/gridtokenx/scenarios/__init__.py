"""Research scenarios: a community over days or a year, with the real stack in one process
(physics, signed readings through the hub's rules, oracle minting, the market engine,
grid-aware curtailment, settlement on the embedded ledger) and the KPIs people compare
markets by."""
