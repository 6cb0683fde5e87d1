"""The Django app ``aml_exportkit.contrib.django``: add it to ``INSTALLED_APPS`` of MUSCLE
(or any project whose ``DATABASES`` hold MUSCLE's tables) for

- ``python manage.py exportkit run|inspect|validate`` (``docs/embedding.md``), and
- the admin export page (its URLs in ``aml_exportkit.contrib.django.urls``).

Django is optional: ``pip install 'aml-exportkit[django]'``.
"""
