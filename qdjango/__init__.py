"""qdjango: the Django app of qengine (models, admin, management commands). Not built yet."""
