"""The DIMSE layer: pynetdicom servers and clients.

pynetdicom's defaults cost CPU for every message whether anyone reads the logs or not: its
"standard" handlers format a log line for every PDU, and it decodes every C-FIND identifier again
to log it, on the SCP side (requests) and on the SCU side (each response, e.g. a reconciliation
crawl's every match). Turned off here, for every process that speaks DIMSE through this package.
"""

from pynetdicom import _config as pynetdicom_config

pynetdicom_config.LOG_HANDLER_LEVEL = "none"
pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
