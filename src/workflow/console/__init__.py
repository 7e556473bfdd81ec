"""The web console: server-rendered pages under /ui on the HTTP face (pages.py), their read models
(views.py), pictures (charts.py), session and CSRF (session.py), live updates (live.py); templates
and static files ship in the package."""
