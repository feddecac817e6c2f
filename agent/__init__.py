"""The vehicle side of the MQTT transport: vehicles as MQTT clients (``python -m agent``)."""
