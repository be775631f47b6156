"""A household's statement it can check itself (docs/statement.md): `build` makes it from
the platform's books and ledger, `verify` checks it offline, `chain` against a ledger."""
