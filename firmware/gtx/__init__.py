# GridTokenX meter firmware (MicroPython). One reading travels:
# chip (modbus.py, chips.py) -> reading (cbor.py, reading.py) -> signature (ed25519.py)
# -> store-and-forward (ring.py) -> publish (uplink.py), driven by app.py.
