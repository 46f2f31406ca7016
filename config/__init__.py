"""Project configuration: ``settings`` (from the environment), ``urls``, ``storage``, WSGI/ASGI."""
