"""The online runtime and the server: budget controller, ledger, fleet and the HTTP front."""
