"""Provider dialects: wire messages of one provider family -> canonical events.

Each dialect module owns only its differences. ``twilio`` covers Twilio Media Streams and
SignalWire (cXML, SWML, RELAY), which share one wire format (docs/protocols.md sections 1-2).
"""
