"""A minimal Django project that maps MUSCLE's tables with unmanaged models, so that tests
can load fixture-json output with Django's own ``loaddata``.

Only the fields of the six exported models are declared in full (loaddata writes every
declared column, and MUSCLE's columns have no database defaults); the config models
(Block, Playlist) declare just what the foreign keys need. The app labels are MUSCLE's, so
the fixture labels (``session.session``, ``result.result``, ...) resolve to these models.
"""
