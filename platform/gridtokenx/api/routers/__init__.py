"""One router per area of the API; `app.py` includes them all."""
