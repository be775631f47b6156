"""The gateway hub: verify, store and batch meter readings for one neighbourhood.

Runs without the platform package: it imports only gridtokenx.wire and itself, and talks
to the platform over HTTP.
"""
