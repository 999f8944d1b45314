"""The caller's location: from the network (a PIDF-LO the carrier sends with the INVITE, read
from Asterisk's res_geolocation at arrival, or fetched by reference: network.py) and from the
handset (Advanced Mobile Location over HTTPS, POST /aml: aml.py, intake.py). Every location is a
``location`` CallEvent of the call it belongs to, so it reaches the record (through the
journal), MQTT and GET /calls/{id} like any other step."""
