"""A small Django project with /sql mounted by ``sqlhttp_middleware.django``: its own routes keep working beside it."""
