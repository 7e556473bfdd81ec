"""`wfm demo`: the whole workflow on 127.0.0.1, narrated, with the reference archive and a wfm server
as child processes (the product never imports `refarchive`), and the scheduler, modality, subscriber
and performer played in this process with wfm's own SCU tools."""
