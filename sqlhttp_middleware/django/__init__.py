"""Django integration: add ``"sqlhttp_middleware.django"`` to ``INSTALLED_APPS`` and
``"sqlhttp_middleware.django.middleware.SQLHTTPMiddleware"`` to ``MIDDLEWARE``, and configure ``SQLHTTP``.

``conf`` reads the setting, ``checks`` reports what is wrong with it at start-up (``sqlhttp.E001``...), ``middleware``
translates Django requests to the core and back. See docs/django.md.
"""
