"""The HTTP face: a sibling of the DICOM face (`workflow.dimse`). This package is its shared plumbing
(the ASGI application, the server thread, bearer-token access, DICOM JSON and failure responses,
metrics); each feature keeps its own routes beside its DIMSE adapter (`<feature>/http.py`)."""
