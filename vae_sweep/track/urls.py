"""Database and tracking-server URLs with their passwords hidden: safe to print, log or store."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def masked(url: str) -> str:
    """``postgresql://vae:secret@host/db`` -> ``postgresql://vae:***@host/db``; others unchanged.

    >>> masked("http://me:pw@mlflow:5000")
    'http://me:***@mlflow:5000'
    """
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
